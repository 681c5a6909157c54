// The Node version check that bin/askr-sidecar.js runs before it loads anything else. The minimum
// has one home, package.json's engines.node (a ">=MAJOR.MINOR.PATCH" range). This file must parse
// and run on any Node that can load an ES module (no syntax newer than ES2020, only node:fs), so
// an old Node, such as a distribution's Node 20, gets a message naming the version it needs
// instead of a SyntaxError, a missing API deep in the server or "dist/ is missing".
import { readFileSync } from 'node:fs';

/** `v24.21.0`, `24.9`, `>=24.9.0`: the leading numbers, missing parts as 0. */
const VERSION = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/;

/**
 * The minimum version in an engines.node range.
 * @param {string} range only the ">=X[.Y[.Z]]" form (what package.json uses)
 * @returns {[number, number, number]}
 * @throws {Error} for any other form, naming it (a packaging bug, caught by test/install.test.ts)
 */
export function minimumOf(range) {
  const m = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(range.trim());
  if (m === null) {
    throw new Error(
      `package.json engines.node is "${range}"; bin/node-version.js reads only ">=X.Y.Z"`,
    );
  }
  return parts(m[1]);
}

/** @param {string} version @returns {[number, number, number]} */
function parts(version) {
  const m = VERSION.exec(version);
  if (m === null) return [0, 0, 0]; // not a version: treated as too old, so the message shows it
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

/**
 * Why this Node cannot run the sidecar, or null when it can.
 * @param {string} version the running Node's `process.version`, e.g. "v20.20.2"
 * @param {string} execPath its `process.execPath`, named in the message (which `node` ran)
 * @param {string} range engines.node, e.g. ">=24.9.0"
 * @returns {string | null} the message for stderr, without a trailing newline
 */
export function nodeVersionProblem(version, execPath, range) {
  const need = minimumOf(range);
  const have = parts(version);
  for (let i = 0; i < 3; i++) {
    if (have[i] > need[i]) return null;
    if (have[i] < need[i]) {
      return [
        `askr-sidecar needs Node >= ${need.join('.')} (this is ${version}, ${execPath}).`,
        `Install Node ${need[0]} (https://nodejs.org/en/download; on Debian, NodeSource's nodejs ${need[0]}.x)`,
        `and run it with that node, or use the Docker image. In a checkout, "npx askr-sidecar" runs`,
        `it on the Node ${need[0]} that "npm ci" installs.`,
      ].join('\n');
    }
  }
  return null;
}

/** package.json's engines.node, read beside bin/ (a checkout, the npm package, the image). */
export function enginesRange() {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return pkg.engines.node;
}
