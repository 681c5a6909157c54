// Regenerates the files derived from code, so they cannot drift (a unit test compares them):
// sidecar.toml and docs/configuration.md from the config schema, and the config and metrics
// reference sections of README.md (between <!-- generated:NAME --> markers).
import { readFileSync, writeFileSync } from 'node:fs';
import { renderMarkdown, renderToml } from '../src/config/render.ts';
import { renderReadmeSections, spliceGenerated } from '../src/config/readme-sections.ts';

writeFileSync(new URL('../sidecar.toml', import.meta.url), renderToml());
writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderMarkdown());
const readmeUrl = new URL('../README.md', import.meta.url);
let readme = readFileSync(readmeUrl, 'utf8');
for (const [name, body] of Object.entries(await renderReadmeSections()))
  readme = spliceGenerated(readme, name, body);
writeFileSync(readmeUrl, readme);
process.stdout.write(
  'wrote sidecar.toml, docs/configuration.md and the generated README sections\n',
);
