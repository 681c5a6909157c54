#!/usr/bin/env node
// Entry point: the compiled build when present (npm package, Docker image), else the TypeScript
// sources directly (Node >= 22.18 strips types; used in development and tests).
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
const entry = existsSync(built) ? built.href : new URL('../src/cli.ts', import.meta.url).href;
const { run } = await import(entry);
await run(process.argv.slice(2));
