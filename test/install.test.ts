/**
 * Installing askr-sidecar (issue 14): `npm ci` accepts the committed lockfile on every platform the
 * image builds on, every install recipe uses it, and the `askr-sidecar` bin checks the Node version
 * before it loads anything else. A recurrence of the original bug looks like `npm ci` failing with
 * "Missing: node-unix-socket-darwin-arm64@ from lock file" (an optional platform package without
 * its own entry in package-lock.json), or Node 20 answering "dist/ is missing".
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'askr-install-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; never rejects (the exit code is part of what tests check). */
function run(file: string, args: string[], cwd = ROOT): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

// --- package-lock.json ---

interface LockEntry {
  version?: string;
  link?: boolean;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  optional?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}
const LOCK = JSON.parse(read('package-lock.json')) as { packages: Record<string, LockEntry> };

/** Where npm resolves `name` from the package at `from`: the nearest node_modules up the tree. */
function resolveIn(from: string, name: string): string | undefined {
  let dir = from;
  for (;;) {
    const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
    if (candidate in LOCK.packages) return candidate;
    if (dir === '') return undefined;
    const at = dir.lastIndexOf('/node_modules/');
    dir = at === -1 ? '' : dir.slice(0, at);
  }
}

describe('package-lock.json', () => {
  it('has an entry for every dependency of every locked package, optional ones included', () => {
    // npm ci builds its tree from the lockfile and refuses any edge without an entry, on every
    // platform, even for a platform package it would skip ("Missing: X@ from lock file").
    const missing: string[] = [];
    const wrongVersion: string[] = [];
    for (const [path, entry] of Object.entries(LOCK.packages)) {
      if (entry.link === true) continue;
      const edges = {
        ...entry.dependencies,
        ...entry.optionalDependencies,
        ...(path === '' ? entry.devDependencies : {}),
      };
      for (const [name, spec] of Object.entries(edges)) {
        const found = resolveIn(path, name);
        if (found === undefined) missing.push(`${path || '(root)'} -> ${name}@${spec}`);
        // Platform packages are pinned to exact versions: the entry must be that version.
        else if (/^\d+\.\d+\.\d+$/.test(spec) && LOCK.packages[found]?.version !== spec) {
          wrongVersion.push(`${found}: ${LOCK.packages[found]?.version ?? '?'}, wanted ${spec}`);
        }
      }
    }
    expect(missing).toEqual([]);
    expect(wrongVersion).toEqual([]);
  });

  it("locks node-unix-socket's binary for linux/amd64 and linux/arm64 (glibc), the image's platforms", () => {
    const optional = LOCK.packages['node_modules/node-unix-socket']?.optionalDependencies ?? {};
    for (const cpu of ['x64', 'arm64']) {
      const fits = Object.keys(optional).filter((name) => {
        const entry = LOCK.packages[`node_modules/${name}`];
        return (
          entry?.optional === true &&
          entry.os?.includes('linux') === true &&
          entry.cpu?.includes(cpu) === true &&
          entry.libc?.includes('glibc') === true
        );
      });
      expect(fits, cpu).toEqual([`node-unix-socket-linux-${cpu}-gnu`]);
    }
  });

  // `npm ci --dry-run` validates the lockfile against package.json exactly as `npm ci` does and
  // lists what it would add, without installing; --os/--cpu/--libc stand for another machine and
  // --offline proves that the lockfile alone decides (no registry lookup fills a gap).
  const PLATFORMS = [
    {
      name: 'linux/amd64 (glibc)',
      os: 'linux',
      cpu: 'x64',
      libc: 'glibc',
      binary: 'linux-x64-gnu',
    },
    {
      name: 'linux/arm64 (glibc)',
      os: 'linux',
      cpu: 'arm64',
      libc: 'glibc',
      binary: 'linux-arm64-gnu',
    },
    { name: 'macOS on arm64', os: 'darwin', cpu: 'arm64', libc: '', binary: 'darwin-arm64' },
  ];
  it.each(PLATFORMS)('npm ci accepts it on $name and adds node-unix-socket-$binary', async (p) => {
    const dir = mkdtempSync(join(scratch, `ci-${p.os}-${p.cpu}-`));
    copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    copyFileSync(join(ROOT, 'package-lock.json'), join(dir, 'package-lock.json'));
    const flags = [
      `--os=${p.os}`,
      `--cpu=${p.cpu}`,
      ...(p.libc === '' ? [] : [`--libc=${p.libc}`]),
    ];
    const ci = await run(
      'npm',
      ['ci', '--dry-run', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', ...flags],
      dir,
    );
    expect(ci.stderr).not.toContain('from lock file');
    expect(ci.code).toBe(0);
    const added = ci.stdout.split('\n').filter((l) => l.startsWith('add node-unix-socket'));
    expect(added.sort()).toEqual(
      ['add node-unix-socket 0.2.7', `add node-unix-socket-${p.binary} 0.2.7`].sort(),
    );
  });
});

// --- install recipes ---

describe('install recipes', () => {
  it('CI runs exactly the README test command, which installs with npm ci', () => {
    const command = /^(\S.*\S)\s+# the whole test suite/m.exec(read('README.md'))?.[1];
    expect(command).toBe('npm ci && npm test');
    const lines = read('.ci/run')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(lines.at(-1)).toBe(command);
  });

  it('the Dockerfile (both stages) and the systemd recipe use npm ci, never npm install', () => {
    const runs = read('Dockerfile')
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((l) => l.startsWith('RUN '));
    expect(runs.filter((r) => /\bnpm install\b/.test(r))).toEqual([]);
    expect(
      runs.filter((r) => /^RUN npm ci\b/.test(r)).map((r) => r.includes('--omit=dev')),
    ).toEqual([false, true]);
    const unitHeader = read('deploy/systemd/askr-sidecar.service')
      .split('\n')
      .filter((l) => l.startsWith('#   npm '));
    expect(unitHeader.length).toBe(1);
    expect(unitHeader[0]).toMatch(/^# {3}npm ci && /);
  });

  it('the npm package ships the version check, the license and a prepack build of dist/', async () => {
    const pkg = JSON.parse(read('package.json')) as {
      license: string;
      scripts: Record<string, string>;
    };
    expect(pkg.license).toBe('MIT');
    expect(read('LICENSE')).toMatch(
      /^MIT License\n\nCopyright \(c\) 2026 askr-sidecar contributors\n/,
    );
    expect(pkg.scripts['prepack']).toBe('npm run build');
    // --ignore-scripts: list the files only (prepack would write dist/ into the checkout).
    const pack = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts']);
    expect(pack.code).toBe(0);
    const [listing] = JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>;
    const files = listing?.files.map((f) => f.path) ?? [];
    expect(files).toEqual(
      expect.arrayContaining(['LICENSE', 'bin/askr-sidecar.js', 'bin/node-version.js']),
    );
  });
});

// --- the bin's Node version check ---

/** bin/node-version.js (plain JS, no declaration file): its exports, as the bin uses them. */
interface NodeVersionModule {
  minimumOf(range: string): [number, number, number];
  nodeVersionProblem(version: string, execPath: string, range: string): string | null;
  enginesRange(): string;
}
// A computed specifier: TypeScript types the import as `any` (it does not check .js files here),
// and the interface above states what the module exports.
const NODE_VERSION = pathToFileURL(join(ROOT, 'bin/node-version.js')).href;
const versions = (await import(NODE_VERSION)) as NodeVersionModule;

describe('bin/askr-sidecar.js on an unsupported Node', () => {
  it.each([
    ['v20.20.2', false],
    ['v22.12.0', false],
    ['v24.0.0', false],
    ['v24.8.9', false],
    ['v24.9.0', true],
    ['v24.21.0', true],
    ['v25.0.0', true],
    ['v100.1.2', true],
    ['not-a-version', false],
  ])('%s against ">=24.9.0": runs = %s', (version, runs) => {
    const problem = versions.nodeVersionProblem(version, '/usr/bin/node', '>=24.9.0');
    if (runs) expect(problem).toBeNull();
    else
      expect(problem).toMatch(
        new RegExp(
          `^askr-sidecar needs Node >= 24\\.9\\.0 \\(this is ${version}, /usr/bin/node\\)\\.\\n`,
        ),
      );
  });

  it.each([
    ['>=24.9.0', [24, 9, 0]],
    ['>=24.9', [24, 9, 0]],
    ['>= 24', [24, 0, 0]],
  ])('reads engines %s as %j', (range, minimum) => {
    expect(versions.minimumOf(range)).toEqual(minimum);
  });

  it.each(['^24.9.0', '>=24.9 <26', '24.x', ''])('refuses engines "%s" by name', (range) => {
    expect(() => versions.minimumOf(range)).toThrow(`engines.node is "${range}"`);
  });

  it("reads package.json's engines, which the pinned Node (running this test) satisfies", () => {
    const range = versions.enginesRange();
    expect(range).toBe(
      (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node,
    );
    expect(versions.minimumOf(range)[0]).toBe(24);
    expect(versions.nodeVersionProblem(process.version, process.execPath, range)).toBeNull();
  });

  it('exits 1 naming the version it needs, having loaded nothing but the bin and its check', async () => {
    // A real Node 24 that reports itself as v20.20.2, and logs every module it resolves.
    const preload = join(scratch, 'pretend-node-20.mjs');
    writeFileSync(
      preload,
      [
        "import { registerHooks } from 'node:module';",
        "Object.defineProperty(process, 'version', { value: 'v20.20.2' });",
        'registerHooks({',
        '  resolve(specifier, context, next) {',
        '    const result = next(specifier, context);',
        '    process.stderr.write(`resolved ${result.url}\\n`);',
        '    return result;',
        '  },',
        '});',
      ].join('\n'),
    );
    const bin = join(ROOT, 'bin/askr-sidecar.js');
    const started = await run(process.execPath, ['--import', preload, bin, '--version']);
    expect(started.code).toBe(1);
    expect(started.stdout).toBe('');
    const lines = started.stderr.split('\n');
    const loaded = lines.filter((l) => l.startsWith('resolved file:')).map((l) => l.slice(9));
    expect(loaded.sort()).toEqual(
      [bin, join(ROOT, 'bin/node-version.js')].map((f) => pathToFileURL(f).href).sort(),
    );
    const message = lines.filter((l) => !l.startsWith('resolved ')).join('\n');
    expect(message).toContain(
      `askr-sidecar needs Node >= 24.9.0 (this is v20.20.2, ${process.execPath}).`,
    );
    expect(message).toContain('npx askr-sidecar');
  });
});
