#!/usr/bin/env node
// Entry point. First the Node version against package.json's engines (./node-version.js): an older
// Node exits 1 with a message naming the version needed, before anything that needs it is loaded.
// Then, in a source checkout (Node strips types), run the TypeScript sources, so a stale dist/ can
// never shadow them; otherwise (npm package, Docker image: no src/) run the compiled dist/.
import { existsSync } from 'node:fs';
import { enginesRange, nodeVersionProblem } from './node-version.js';

const problem = nodeVersionProblem(process.version, process.execPath, enginesRange());
if (problem !== null) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}

const source = new URL('../src/cli.ts', import.meta.url);
const built = new URL('../dist/cli.js', import.meta.url);
const useSource = existsSync(source) && Boolean(process.features.typescript);
if (!useSource && !existsSync(built)) {
  process.stderr.write('askr-sidecar: dist/ is missing; run "npm run build" first\n');
  process.exit(1);
}
const { run } = await import((useSource ? source : built).href);
await run(process.argv.slice(2));
