// Writes sidecar.toml and docs/configuration.md from the schema (see src/config/render.ts).
import { writeFileSync } from 'node:fs';
import { renderMarkdown, renderToml } from '../src/config/render.ts';

writeFileSync(new URL('../sidecar.toml', import.meta.url), renderToml());
writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderMarkdown());
process.stdout.write('wrote sidecar.toml and docs/configuration.md\n');
