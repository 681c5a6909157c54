#!/usr/bin/env node
// Entry point. In a source checkout on a Node that strips types (>= 22.18), run the TypeScript
// sources, so a stale dist/ can never shadow them; otherwise (npm package, Docker image: no
// src/) run the compiled build in dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli.ts', import.meta.url);
const built = new URL('../dist/cli.js', import.meta.url);
const useSource = existsSync(source) && Boolean(process.features.typescript);
if (!useSource && !existsSync(built)) {
  process.stderr.write('askr-sidecar: dist/ is missing; run "npm run build" first\n');
  process.exit(1);
}
const { run } = await import((useSource ? source : built).href);
await run(process.argv.slice(2));
