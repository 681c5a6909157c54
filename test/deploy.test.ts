/**
 * The packaging and deploy recipes (Dockerfile, .dockerignore, deploy/**), checked without Docker,
 * Kubernetes or systemd: every example config passes `askr-sidecar check-config` with the
 * environment its recipe gives it, and every ASKR_* variable given is a config key (askr) or one
 * PHP reads (PHP); each recipe agrees with itself (socket directory shared by PHP and the sidecar
 * or relay beside it, FPM address, probe paths and ports, one Redis and key prefix for every
 * sidecar and relay of the cluster, selectors that pick the right pods); the image layout the
 * Dockerfile assembles runs dist/cli.js; the Grafana dashboard queries only exported metrics.
 */
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { runCommand, type CommandResult } from './helpers/process.ts';
import { parseRedisUrl } from '../src/cluster/redis-url.ts';
import { loadConfig } from '../src/config/load.ts';
import { schema, type SidecarConfig } from '../src/config/schema.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin/askr-sidecar.js');
const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'askr-deploy-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// Parsed YAML/JSON is unknown: narrow it, failing with the path that was expected.
type Rec = Record<string, unknown>;
function get(value: unknown, ...path: string[]): unknown {
  let v = value;
  for (const key of path) {
    if (typeof v !== 'object' || v === null) throw new Error(`no "${path.join('.')}"`);
    v = (v as Rec)[key];
  }
  return v;
}
function rec(v: unknown, what = 'value'): Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error(`${what}: not a map`);
  return v as Rec;
}
const recs = (v: unknown, what = 'value'): Rec[] => {
  if (!Array.isArray(v)) throw new Error(`${what}: not a list`);
  return v.map((x) => rec(x, what));
};
const str = (v: unknown, what = 'value'): string => {
  if (typeof v !== 'string') throw new Error(`${what}: not a string`);
  return v;
};

/** Runs a command to its end; `env` is added to this process's env minus every ASKR_* variable. */
function run(argv: string[], env: Record<string, string>, cwd = scratch): Promise<CommandResult> {
  return runCommand(argv, { env, cwd });
}

/** `askr-sidecar check-config --config FILE` as users run it; returns the resolved config. */
async function checkConfig(file: string, env: Record<string, string>): Promise<SidecarConfig> {
  // --static: the example's root and FPM live on the target host, not on this machine.
  const result = await run(
    [process.execPath, BIN, 'check-config', '--static', '--config', file],
    env,
  );
  expect(result.stderr).toBe('');
  expect(result.stdout).toContain('configuration OK');
  expect(result.code).toBe(0);
  return loadConfig({ file, env });
}
const portOf = (listen: string): number => Number(/:(\d+)$/.exec(listen)?.[1]);

// --- Dockerfile ---
interface Stage {
  image: string;
  name: string | undefined;
  steps: Array<{ keyword: string; args: string }>;
}
/** Dockerfile instructions per stage: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Stage[] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    pending += (pending === '' ? '' : ' ') + line.replace(/\\$/, '').trim();
    if (!line.endsWith('\\')) {
      lines.push(pending);
      pending = '';
    }
  }
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') {
      const [image = '', as, name] = args.split(/\s+/);
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, steps: [] });
    } else {
      stages.at(-1)?.steps.push({ keyword: keyword.toUpperCase(), args });
    }
  }
  return stages;
}
const stepsOf = (stage: Stage, keyword: string): string[] =>
  stage.steps.filter((s) => s.keyword === keyword).map((s) => s.args);
const execForm = (stage: Stage, keyword: string): string[] =>
  JSON.parse(stepsOf(stage, keyword).at(-1) ?? '[]') as string[];
/** `COPY [--flag=v]... src... dest`. */
function parseCopy(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const paths = words.filter((w) => !w.startsWith('--'));
  const from = words.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
}
/** `ENV A=1 B=2` (unquoted values, as this Dockerfile writes them). */
function imageEnv(stage: Stage): Record<string, string> {
  const pairs = stepsOf(stage, 'ENV').flatMap((args) => args.split(/\s+/));
  for (const pair of pairs) expect(pair, 'ENV KEY=value').toMatch(/^\w+=[^"']*$/);
  return Object.fromEntries(
    pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]),
  );
}
/** Docker's .dockerignore rules (moby/patternmatcher): the last matching pattern wins, and a
 * pattern matching a parent directory matches everything under it. */
function dockerIgnored(path: string, patterns: string[]): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = posix.normalize(raw.slice(negate ? 1 : 0)).replace(/^\/|\/$/g, '');
    const re = pattern
      .split(/(\*\*\/|\*\*|\*|\?)/)
      .map((part) =>
        part === '**/'
          ? '(.*/)?'
          : part === '**'
            ? '.*'
            : part === '*'
              ? '[^/]*'
              : part === '?'
                ? '[^/]'
                : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
      )
      .join('');
    const parts = path.split('/');
    if (parts.some((_, i) => new RegExp(`^${re}$`).test(parts.slice(0, i + 1).join('/')))) {
      ignored = !negate;
    }
  }
  return ignored;
}
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) =>
    statSync(join(dir, f)).isFile(),
  );

const STAGES = parseDockerfile(read('Dockerfile'));
const FINAL = STAGES.at(-1) ?? { image: '', name: undefined, steps: [] };
/** The image's ENV: what every container recipe starts from. */
const IMAGE_ENV = imageEnv(FINAL);

describe('Dockerfile', () => {
  const build = STAGES.find((s) => s.name === 'build') ?? { image: '', name: '', steps: [] };
  const ignore = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  it('uses the official Node 24 image in every stage and runs the README build', () => {
    expect(STAGES.map((s) => s.name)).toContain('build');
    for (const stage of STAGES) expect(stage.image).toMatch(/^node:24(-|$)/);
    // README: `npm ci` from the committed lockfile, then build.
    const readme = read('README.md');
    expect(readme).toContain('npm run build');
    expect(readme).toMatch(/npm (install|ci)/);
    expect(stepsOf(build, 'RUN').some((r) => /^npm ci( |$)/.test(r))).toBe(true);
    expect(stepsOf(build, 'RUN')).toContain('npm run build');
    expect(get(JSON.parse(read('package.json')), 'scripts', 'build')).toBe(
      'tsc -p tsconfig.build.json',
    );
    // Production dependencies only: the pinned `node` devDependency is not installed.
    expect(stepsOf(FINAL, 'RUN').some((r) => r.startsWith('npm ci --omit=dev'))).toBe(true);
  });

  it('copies the built dist/ from the build stage, never src/, and runs bin/askr-sidecar.js', () => {
    const copies = stepsOf(FINAL, 'COPY').map(parseCopy);
    const dist = copies.find((c) => c.from === 'build');
    expect(dist?.sources).toEqual([`${stepsOf(build, 'WORKDIR').at(-1) ?? ''}/dist/`]);
    expect(dist?.dest).toBe('dist/');
    expect(copies.flatMap((c) => c.sources).filter((s) => s.startsWith('src'))).toEqual([]);
    expect(execForm(FINAL, 'ENTRYPOINT').slice(-2)).toEqual(['node', 'bin/askr-sidecar.js']);
    expect(execForm(FINAL, 'CMD')).toEqual(['serve', '--config', '/etc/askr/sidecar.toml']);
  });

  it('runs as a numeric non-root user, exposes 8080 and 9100, keeps /run/askr as a volume', () => {
    // Numeric, so Kubernetes' runAsNonRoot can verify it.
    expect(stepsOf(FINAL, 'USER').at(-1)).toMatch(/^[1-9]\d*(:\d+)?$/);
    expect(stepsOf(FINAL, 'EXPOSE').join(' ').split(/\s+/).sort()).toEqual(['8080', '9100']);
    expect(stepsOf(FINAL, 'VOLUME').map((v) => JSON.parse(v) as unknown)).toEqual([['/run/askr']]);
    expect(portOf(IMAGE_ENV['ASKR_SERVER_LISTEN'] ?? '')).toBe(8080);
    expect(portOf(IMAGE_ENV['ASKR_METRICS_LISTEN'] ?? '')).toBe(9100);
    expect(dirname(IMAGE_ENV['ASKR_BROADCAST_SOCKET'] ?? '')).toBe('/run/askr');
  });

  it('has a HEALTHCHECK command that exits 0 on a 200 from /healthz and 1 otherwise', async () => {
    const json = /\bCMD\s+(\[.*\])$/.exec(stepsOf(FINAL, 'HEALTHCHECK').at(-1) ?? '')?.[1];
    const [node, ...args] = JSON.parse(json ?? '[]') as string[];
    expect(node).toBe('node');
    let status = 200;
    const paths: string[] = [];
    const server = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(status).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    // As in the image: the port comes from ASKR_METRICS_LISTEN (0.0.0.0:9100 there).
    const check = (): Promise<CommandResult> =>
      run([process.execPath, ...args], { ASKR_METRICS_LISTEN: `0.0.0.0:${port}` });
    try {
      expect((await check()).code).toBe(0);
      status = 503;
      expect((await check()).code).toBe(1);
      expect(paths).toEqual(['/healthz', '/healthz']);
    } finally {
      server.close();
      await once(server, 'close');
    }
    expect((await check()).code).toBe(1); // nothing listening
  });

  it('sends every file it copies in the build context, and no node_modules, dist or .git', () => {
    for (const copy of [...stepsOf(build, 'COPY'), ...stepsOf(FINAL, 'COPY')].map(parseCopy)) {
      if (copy.from !== undefined) continue;
      for (const source of copy.sources) {
        expect(existsSync(join(ROOT, source)), source).toBe(true);
        const isDir = statSync(join(ROOT, source)).isDirectory();
        const files = isDir ? filesUnder(join(ROOT, source)).map((f) => join(source, f)) : [source];
        for (const file of files)
          expect(dockerIgnored(file, ignore), file).toBe(file.endsWith('.test.ts'));
      }
    }
    for (const path of [
      'node_modules/pino/package.json',
      'dist/cli.js',
      '.git/HEAD',
      'test/deploy.test.ts',
    ]) {
      expect(dockerIgnored(path, ignore), path).toBe(true);
    }
  });

  it('assembles an image layout that runs dist/cli.js: --version and check-config', async () => {
    // The build stage's `npm run build` (tsc -p tsconfig.build.json) into a scratch outDir: a
    // dist/ in the repository would make bin/ run stale compiled code in every other test.
    const out = join(scratch, 'build-dist');
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const built = await run(
      [process.execPath, tsc, '-p', 'tsconfig.build.json', '--outDir', out],
      {},
      ROOT,
    );
    expect(built.stdout + built.stderr).toBe('');
    expect(built.code).toBe(0);
    expect(existsSync(join(out, 'cli.js'))).toBe(true);

    // The final stage's WORKDIR and COPY steps, replayed into a scratch root file system.
    const rootfs = join(scratch, 'rootfs');
    let workdir = '/';
    const inFs = (p: string): string => join(rootfs, posix.resolve(workdir, p));
    for (const step of FINAL.steps) {
      if (step.keyword === 'WORKDIR') workdir = posix.resolve(workdir, step.args);
      if (step.keyword !== 'COPY') continue;
      const copy = parseCopy(step.args);
      for (const source of copy.sources) {
        const from = copy.from === undefined ? join(ROOT, source) : out;
        const isDir = statSync(from).isDirectory();
        const intoDir = !isDir && (copy.dest.endsWith('/') || copy.dest === '.');
        const target = intoDir ? join(inFs(copy.dest), basename(source)) : inFs(copy.dest);
        mkdirSync(isDir ? target : dirname(target), { recursive: true });
        cpSync(from, target, { recursive: true });
      }
    }
    const app = inFs('.');
    expect(existsSync(join(app, 'src'))).toBe(false); // so bin/ can only have loaded dist/cli.js
    symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules')); // stands for `npm ci --omit=dev`
    const entry = execForm(FINAL, 'ENTRYPOINT');
    const script = join(app, entry[entry.indexOf('node') + 1] ?? '');

    const version = await run([process.execPath, script, '--version'], IMAGE_ENV, app);
    expect(version.stdout.trim()).toBe(get(JSON.parse(read('package.json')), 'version'));
    const args = execForm(FINAL, 'CMD').map((a) =>
      a === 'serve' ? 'check-config' : a.startsWith('/') ? join(rootfs, a) : a,
    );
    args.splice(1, 0, '--static'); // the app and FPM are not in this image layout
    const check = await run([process.execPath, script, ...args], IMAGE_ENV, app);
    expect(check.stderr).toBe('');
    expect(check.stdout).toContain('configuration OK');
    expect(check.code).toBe(0);
  });
});

/** A Kubernetes container's env list; a value from a Secret is stood for by a placeholder. */
const envOf = (container: Rec): Record<string, string> =>
  Object.fromEntries(
    recs(container['env'] ?? [], 'env').map((e) => [
      str(e['name']),
      e['value'] === undefined ? 'from-a-secret' : str(e['value']),
    ]),
  );

/**
 * ASKR_* variables a recipe gives askr-sidecar must be config keys: the loader ignores ASKR_*
 * names of no section (they belong to the PHP side), so a misspelt or not yet existing key would
 * pass check-config and silently do nothing (a "cluster" that is one node per pod).
 */
const CONFIG_ENV = new Set(
  Object.entries(schema).flatMap(([section, fields]) =>
    Object.keys(fields).map((key) => `ASKR_${section}_${key}`.toUpperCase()),
  ),
);
/** What the PHP shim and its Laravel driver read (php/src/askr.php, config/broadcasting.php). */
const PHP_ENV = new Set(['ASKR_SOCKET', 'ASKR_THROW']);
const askrNames = (env: Record<string, string>): string[] =>
  Object.keys(env).filter((name) => name.startsWith('ASKR_'));
function expectAskrEnv(env: Record<string, string>, what: string): void {
  expect(
    askrNames(env).filter((n) => !CONFIG_ENV.has(n)),
    `${what}: not config keys`,
  ).toEqual([]);
}
function expectPhpEnv(env: Record<string, string>, what: string): void {
  expect(
    askrNames(env).filter((n) => !PHP_ENV.has(n)),
    `${what}: not read by PHP`,
  ).toEqual([]);
}
/** What makes two askr processes one cluster: the same Redis database and key prefix. */
const cluster = ({ cluster: c }: SidecarConfig): { redis_url: string; key_prefix: string } => ({
  redis_url: c.redis_url,
  key_prefix: c.key_prefix,
});

describe('the image and the commands the recipes run', () => {
  it('sets only config keys in the image; askr-sidecar has the relay command', async () => {
    expectAskrEnv(IMAGE_ENV, 'Dockerfile ENV');
    const help = await run([process.execPath, BIN, '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s*askr-sidecar relay\b/m);
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = yaml.load(read('deploy/docker-compose.yml'));
  const service = (name: string): Rec => rec(get(compose, 'services', name), `service ${name}`);
  const php = service('php-fpm');
  const sidecar = service('sidecar');
  const relay = service('relay');
  const worker = service('worker');
  const redis = service('redis');
  /** Short-syntax mounts as [source, target]; bind sources resolved against deploy/. */
  const mounts = (s: Rec): Array<[string, string]> =>
    (s['volumes'] as unknown[]).map((v) => {
      const [source = '', target = ''] = str(v, 'volume').split(':');
      return [source.startsWith('.') ? resolve(ROOT, 'deploy', source) : source, target];
    });
  const envOfService = (s: Rec): Record<string, string> =>
    rec(s['environment'] ?? {}) as Record<string, string>;
  const dockerfileOf = (s: Rec): string =>
    resolve(ROOT, 'deploy', str(get(s, 'build', 'context')), str(get(s, 'build', 'dockerfile')));
  /** check-config for the askr container `s`, with its config file mount and its env. */
  async function resolvedFor(s: Rec): Promise<SidecarConfig> {
    const config = mounts(s).find(([, target]) => target === execForm(FINAL, 'CMD')[2]);
    expect(config?.[0]).toBe(join(ROOT, 'deploy/docker/sidecar.toml'));
    return checkConfig(config?.[0] ?? '', { ...IMAGE_ENV, ...envOfService(s) });
  }

  it('runs php:8.3-fpm, the sidecar and the relay built from the repository Dockerfile, Redis', () => {
    expect(php['image']).toBe('php:8.3-fpm');
    expect(dockerfileOf(sidecar)).toBe(join(ROOT, 'Dockerfile'));
    expect(dockerfileOf(relay)).toBe(join(ROOT, 'Dockerfile'));
    expect(relay['image']).toBe(sidecar['image']);
    // The image's ENTRYPOINT runs bin/askr-sidecar.js; the relay only changes the command.
    expect(sidecar['command']).toBeUndefined();
    expect(relay['command']).toEqual(['relay', '--config', execForm(FINAL, 'CMD')[2]]);
    // Redis is part of the cluster, not an option: no profile, and no persistence.
    expect(redis['image']).toBe('redis:7-alpine');
    expect(redis['profiles']).toBeUndefined();
    expect(redis['command']).toEqual(['redis-server', '--save', '', '--appendonly', 'no']);
    for (const s of [sidecar, relay]) expect(s['depends_on']).toContain('redis');
    expect(worker['depends_on']).toContain('relay');
  });

  it('only gives askr config keys to askr, and only what PHP reads to PHP', () => {
    for (const [name, s] of Object.entries(rec(get(compose, 'services')))) {
      const env = envOfService(rec(s));
      if (name === 'sidecar' || name === 'relay') expectAskrEnv(env, name);
      else expectPhpEnv(env, name);
    }
  });

  it('web: passes check-config with the image and compose env; sidecar and php-fpm agree', async () => {
    const resolved = await resolvedFor(sidecar);

    // The datagram socket is in a volume php-fpm mounts at the same place, and PHP looks there.
    const socketDir = dirname(resolved.broadcast.socket);
    const volume = mounts(sidecar).find(([, target]) => target === socketDir)?.[0] ?? '';
    expect(Object.keys(rec(get(compose, 'volumes')))).toContain(volume);
    expect(mounts(php)).toContainEqual([volume, socketDir]);
    expect(get(php, 'environment', 'ASKR_SOCKET')).toBe(resolved.broadcast.socket);

    // FPM is the php-fpm service; the document root is mounted in both containers at the same
    // path (the sidecar builds SCRIPT_FILENAME, php-fpm opens it) and holds the front controller.
    expect(resolved.fastcgi.address).toBe('php-fpm:9000');
    const { root, index } = resolved.server;
    const [source = '', target = ''] =
      mounts(sidecar).find(([s, t]) => s.startsWith('/') && root.startsWith(`${t}/`)) ?? [];
    expect(mounts(php)).toContainEqual([source, target]);
    expect(existsSync(join(source, relative(target, root), index))).toBe(true);

    // The cluster is on, on the redis service (Compose's DNS name) at Redis' port.
    const redisTarget = parseRedisUrl(cluster(resolved).redis_url);
    expect([redisTarget.host, redisTarget.port, redisTarget.tls]).toEqual(['redis', 6379, false]);
  });

  it('worker: the relay joins the same cluster and binds the socket the PHP worker writes to', async () => {
    const web = await resolvedFor(sidecar);
    const resolved = await resolvedFor(relay);
    // Same Redis, same database, same key prefix: otherwise the relay publishes into nothing.
    expect(cluster(resolved)).toEqual(cluster(web));

    // The relay's socket directory is a volume of its own, shared with the worker only.
    const socketDir = dirname(resolved.broadcast.socket);
    const volume = mounts(relay).find(([, target]) => target === socketDir)?.[0] ?? '';
    expect(Object.keys(rec(get(compose, 'volumes')))).toContain(volume);
    expect(get(compose, 'volumes', volume)).toEqual(
      get(compose, 'volumes', mounts(sidecar).find(([, t]) => t === socketDir)?.[0] ?? ''),
    );
    expect(mounts(worker)).toContainEqual([volume, socketDir]);
    expect(mounts(php).map(([s]) => s)).not.toContain(volume);
    expect(get(worker, 'environment', 'ASKR_SOCKET')).toBe(resolved.broadcast.socket);
    // PHP runs in the socket's group (the socket is 0660), under an init that passes SIGTERM on.
    expect(str(worker['user']).split(':')[1]).toBe(resolved.broadcast.socket_group);
    expect(worker['init']).toBe(true);

    // The worker's script is mounted where its command runs it, and the shim where it requires it.
    const [interpreter, script = ''] = worker['command'] as string[];
    expect(interpreter).toBe('php');
    const scriptSource = mounts(worker).find(([, t]) => t === script)?.[0] ?? '';
    expect(existsSync(scriptSource), script).toBe(true);
    const required = /require '([^']+)'/.exec(readFileSync(scriptSource, 'utf8'))?.[1] ?? '';
    const shim = mounts(worker).find(([, t]) => required.startsWith(`${t}/`));
    expect(existsSync(join(shim?.[0] ?? '', relative(shim?.[1] ?? '', required))), required).toBe(
      true,
    );
  });
});

describe('deploy/kubernetes', () => {
  const files = readdirSync(join(ROOT, 'deploy/kubernetes')).filter((f) => f.endsWith('.yaml'));
  const docs = files.flatMap((f) =>
    yaml.loadAll(read(`deploy/kubernetes/${f}`)).map((d) => rec(d, f)),
  );
  const named = (kind: string, name: string): Rec =>
    rec(
      docs.find((d) => d['kind'] === kind && get(d, 'metadata', 'name') === name),
      `${kind} ${name}`,
    );
  const podOf = (deployment: string): Rec =>
    rec(get(named('Deployment', deployment), 'spec', 'template', 'spec'));
  const podLabels = (deployment: string): Rec =>
    rec(get(named('Deployment', deployment), 'spec', 'template', 'metadata', 'labels'));
  const allContainers = (pod: Rec): Rec[] => [
    ...recs(pod['initContainers'] ?? []),
    ...recs(pod['containers']),
  ];
  const container = (pod: Rec, name: string): Rec =>
    rec(
      allContainers(pod).find((c) => c['name'] === name),
      `container ${name}`,
    );
  const volume = (pod: Rec, name: unknown): Rec =>
    rec(
      recs(pod['volumes']).find((v) => v['name'] === name),
      `volume ${String(name)}`,
    );
  const mountAt = (c: Rec, path: string): Rec | undefined =>
    recs(c['volumeMounts']).find((m) => m['mountPath'] === path);
  const portNumber = (c: Rec, port: unknown): number =>
    typeof port === 'number'
      ? port
      : Number(recs(c['ports']).find((p) => p['name'] === port)?.['containerPort']);
  /** Kubernetes label selectors (matchLabels and In/NotIn/Exists/DoesNotExist expressions). */
  function selects(selector: unknown, labels: Rec): boolean {
    const s = rec(selector, 'selector');
    const matchLabels = rec(s['matchLabels'] ?? {});
    const plain = s['matchLabels'] === undefined && s['matchExpressions'] === undefined;
    const pairs = Object.entries(plain ? s : matchLabels);
    return (
      pairs.every(([k, v]) => labels[k] === v) &&
      recs(s['matchExpressions'] ?? []).every((e) => {
        const value = labels[str(e['key'])];
        const values = (e['values'] ?? []) as unknown[];
        switch (e['operator']) {
          case 'In':
            return values.includes(value);
          case 'NotIn':
            return !values.includes(value);
          case 'Exists':
            return value !== undefined;
          default:
            return value === undefined;
        }
      })
    );
  }
  const deployments = docs
    .filter((d) => d['kind'] === 'Deployment')
    .map((d) => str(get(d, 'metadata', 'name')));
  // The ConfigMap's sidecar.toml, as the sidecar and relay containers read it.
  const configMap = named('ConfigMap', 'my-app-askr');
  const configFile = join(scratch, 'k8s-sidecar.toml');
  writeFileSync(configFile, str(get(configMap, 'data', 'sidecar.toml')));
  /** The askr container of a pod passes check-config with the image's ENV and its own. */
  async function resolvedFor(pod: Rec, c: Rec, command: string): Promise<SidecarConfig> {
    const args = c['args'] as string[];
    expect(args[0]).toBe(command);
    const configPath = args[args.indexOf('--config') + 1] ?? '';
    expect(basename(configPath)).toBe('sidecar.toml');
    const configVolume = volume(pod, mountAt(c, dirname(configPath))?.['name']);
    expect(get(configVolume, 'configMap', 'name')).toBe(get(configMap, 'metadata', 'name'));
    return checkConfig(configFile, { ...IMAGE_ENV, ...envOf(c) });
  }
  const web = podOf('my-app-web');
  const sidecar = container(web, 'sidecar');
  const php = container(web, 'php-fpm');
  const WORKERS = [
    { deployment: 'my-app-queue-worker', php: 'queue-worker', artisan: 'queue:work' },
    { deployment: 'my-app-scheduler', php: 'scheduler', artisan: 'schedule:work' },
  ];

  it('has the web tier, the queue workers, the scheduler and Redis', () => {
    expect(deployments.sort()).toEqual(
      ['my-app-queue-worker', 'my-app-redis', 'my-app-scheduler', 'my-app-web'].sort(),
    );
    for (const name of deployments) {
      const d = named('Deployment', name);
      expect(selects(get(d, 'spec', 'selector'), podLabels(name)), name).toBe(true);
      // No Deployment's selector takes another's pods (a rollout would fight over them).
      for (const other of deployments.filter((o) => o !== name))
        expect(selects(get(d, 'spec', 'selector'), podLabels(other)), `${name} / ${other}`).toBe(
          false,
        );
    }
  });

  it('only gives askr config keys to askr, and only what PHP reads to PHP', () => {
    for (const name of deployments.filter((d) => d !== 'my-app-redis')) {
      for (const c of allContainers(podOf(name))) {
        const what = `${name}/${str(c['name'])}`;
        const isAskr = str(c['image']).includes('askr-sidecar');
        if (isAskr) expectAskrEnv(envOf(c), what);
        else expectPhpEnv(envOf(c), what);
      }
    }
  });

  it('web: sidecar and php-fpm in one pod, the socket directory an emptyDir in both', async () => {
    const resolved = await resolvedFor(web, sidecar, 'serve');
    const socketDir = dirname(resolved.broadcast.socket);
    const mount = mountAt(sidecar, socketDir);
    expect(volume(web, mount?.['name'])['emptyDir']).toBeDefined();
    expect(mountAt(php, socketDir)?.['name']).toBe(mount?.['name']);
    expect(envOf(php)['ASKR_SOCKET']).toBe(resolved.broadcast.socket);
    expect(resolved.fastcgi.address).toBe('127.0.0.1:9000');
    // The pod's fsGroup owns the socket directory and is the socket's group.
    expect(String(get(web, 'securityContext', 'fsGroup'))).toBe(resolved.broadcast.socket_group);
    expect(get(sidecar, 'securityContext', 'runAsNonRoot')).toBe(true);
  });

  it('web: several replicas on Redis, a rollout never takes one away before its successor is ready', async () => {
    const resolved = await resolvedFor(web, sidecar, 'serve');
    const deployment = named('Deployment', 'my-app-web');
    expect(get(deployment, 'spec', 'replicas')).toBeGreaterThanOrEqual(2);
    expect(get(deployment, 'spec', 'strategy', 'rollingUpdate', 'maxUnavailable')).toBe(0);
    expect(get(named('PodDisruptionBudget', 'my-app-web'), 'spec', 'minAvailable')).toBe(1);
    expect(
      selects(
        get(named('PodDisruptionBudget', 'my-app-web'), 'spec', 'selector'),
        podLabels('my-app-web'),
      ),
    ).toBe(true);

    // The cluster's Redis is redis.yaml's Service, at its port, which reaches the Redis pod.
    const target = parseRedisUrl(cluster(resolved).redis_url);
    const redisService = named('Service', target.host);
    const servicePort = recs(get(redisService, 'spec', 'ports')).find(
      (p) => p['port'] === target.port,
    );
    expect(servicePort, `Service ${target.host} port ${target.port}`).toBeDefined();
    expect(selects(get(redisService, 'spec', 'selector'), podLabels('my-app-redis'))).toBe(true);
    const redisContainer = container(podOf('my-app-redis'), 'redis');
    expect(portNumber(redisContainer, servicePort?.['targetPort'])).toBe(6379);
    expect(redisContainer['image']).toBe('redis:7-alpine');
    expect(redisContainer['args']).toEqual(['redis-server', '--save', '', '--appendonly', 'no']);
    expect(get(named('Deployment', 'my-app-redis'), 'spec', 'replicas')).toBe(1);

    // The web Service sends HTTP to web pods only (workers and Redis have no HTTP server).
    const webService = named('Service', 'my-app-web');
    for (const name of deployments)
      expect(selects(get(webService, 'spec', 'selector'), podLabels(name)), name).toBe(
        name === 'my-app-web',
      );
  });

  it.each(WORKERS)(
    '$deployment: a relay on the same cluster binds the socket PHP writes to',
    async (w) => {
      const pod = podOf(w.deployment);
      const relay = container(pod, 'relay');
      const worker = container(pod, w.php);
      // A native sidecar container: started (socket bound) before PHP, stopped after it.
      expect(recs(pod['initContainers']).map((c) => c['name'])).toContain('relay');
      expect(relay['restartPolicy']).toBe('Always');
      expect(get(relay, 'startupProbe', 'httpGet', 'path')).toBe('/readyz');
      expect(relay['image']).toBe(sidecar['image']);

      const resolved = await resolvedFor(pod, relay, 'relay');
      const webResolved = await resolvedFor(web, sidecar, 'serve');
      expect(cluster(resolved)).toEqual(cluster(webResolved));

      const socketDir = dirname(resolved.broadcast.socket);
      const mount = mountAt(relay, socketDir);
      expect(volume(pod, mount?.['name'])['emptyDir']).toBeDefined();
      expect(mountAt(worker, socketDir)?.['name']).toBe(mount?.['name']);
      expect(envOf(worker)['ASKR_SOCKET']).toBe(resolved.broadcast.socket);
      expect(String(get(pod, 'securityContext', 'fsGroup'))).toBe(resolved.broadcast.socket_group);
      expect(String(get(worker, 'securityContext', 'runAsGroup'))).toBe(
        resolved.broadcast.socket_group,
      );
      expect(get(relay, 'securityContext', 'runAsNonRoot')).toBe(true);
      expect((worker['command'] as string[]).slice(0, 3)).toEqual(['php', 'artisan', w.artisan]);

      // The relay's admin listener answers the probes.
      const metricsPort = portOf(resolved.metrics.listen);
      expect(get(relay, 'livenessProbe', 'httpGet', 'path')).toBe('/healthz');
      expect(get(relay, 'readinessProbe', 'httpGet', 'path')).toBe('/readyz');
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'])
        expect(portNumber(relay, get(relay, probe, 'httpGet', 'port')), probe).toBe(metricsPort);
    },
  );

  it('runs exactly one scheduler, replaced rather than rolled', () => {
    const deployment = named('Deployment', 'my-app-scheduler');
    expect(get(deployment, 'spec', 'replicas')).toBe(1);
    expect(get(deployment, 'spec', 'strategy', 'type')).toBe('Recreate');
  });

  it('lets every pod with a Redis URL reach Redis through its NetworkPolicy', () => {
    const policy = named('NetworkPolicy', 'my-app-redis');
    expect(selects(get(policy, 'spec', 'podSelector'), podLabels('my-app-redis'))).toBe(true);
    const from = recs(recs(get(policy, 'spec', 'ingress'))[0]?.['from']);
    const clients = deployments.filter((name) =>
      allContainers(podOf(name)).some((c) => envOf(c)['ASKR_CLUSTER_REDIS_URL'] !== undefined),
    );
    expect(clients.sort()).toEqual(['my-app-queue-worker', 'my-app-scheduler', 'my-app-web']);
    for (const name of deployments)
      expect(
        from.some((f) => selects(f['podSelector'], podLabels(name))),
        name,
      ).toBe(clients.includes(name));
  });

  it('wires liveness to /healthz and readiness to /readyz on the metrics port, and scraping', () => {
    const resolved = loadConfig({ file: configFile, env: { ...IMAGE_ENV, ...envOf(sidecar) } });
    const metricsPort = portOf(resolved.metrics.listen);
    expect(metricsPort).toBe(9100);
    expect(get(sidecar, 'livenessProbe', 'httpGet', 'path')).toBe('/healthz');
    expect(get(sidecar, 'readinessProbe', 'httpGet', 'path')).toBe('/readyz');
    expect(portNumber(sidecar, get(sidecar, 'livenessProbe', 'httpGet', 'port'))).toBe(metricsPort);
    expect(portNumber(sidecar, get(sidecar, 'readinessProbe', 'httpGet', 'port'))).toBe(
      metricsPort,
    );
    expect(portNumber(sidecar, 'http')).toBe(portOf(resolved.server.listen));
    for (const name of deployments.filter((d) => d !== 'my-app-redis')) {
      const annotations = get(
        named('Deployment', name),
        'spec',
        'template',
        'metadata',
        'annotations',
      );
      expect(annotations, name).toMatchObject({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(metricsPort),
        'prometheus.io/path': '/metrics',
      });
    }
    // The ServiceMonitor scrapes the web Service's metrics port; the PodMonitor the relays'.
    const monitors = yaml.loadAll(read('deploy/kubernetes/servicemonitor.yaml')).map((d) => rec(d));
    const monitor = rec(
      monitors.find((d) => d['kind'] === 'ServiceMonitor'),
      'ServiceMonitor',
    );
    const webService = named('Service', 'my-app-web');
    expect(
      selects(get(monitor, 'spec', 'selector'), rec(get(webService, 'metadata', 'labels'))),
    ).toBe(true);
    const endpoint = recs(get(monitor, 'spec', 'endpoints'))[0];
    const servicePort = recs(get(webService, 'spec', 'ports')).find(
      (p) => p['name'] === endpoint?.['port'],
    );
    expect(portNumber(sidecar, servicePort?.['targetPort'])).toBe(metricsPort);
    expect(endpoint?.['path']).toBe('/metrics');
    const podMonitor = rec(
      monitors.find((d) => d['kind'] === 'PodMonitor'),
      'PodMonitor',
    );
    const podEndpoint = recs(get(podMonitor, 'spec', 'podMetricsEndpoints'))[0];
    expect(podEndpoint?.['path']).toBe('/metrics');
    for (const name of deployments.filter((d) => d !== 'my-app-web')) {
      const relay = allContainers(podOf(name)).find((c) => c['name'] === 'relay');
      expect(selects(get(podMonitor, 'spec', 'selector'), podLabels(name)), name).toBe(
        relay !== undefined,
      );
      if (relay) expect(portNumber(relay, podEndpoint?.['port'])).toBe(metricsPort);
    }
  });
});

describe('deploy/systemd', () => {
  const unit = read('deploy/systemd/askr-sidecar.service');
  const directive = (key: string): string[] =>
    [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => (m[1] ?? '').trim());

  it('runs serve with /etc/askr/sidecar.toml as a non-root user, reloads with SIGHUP', async () => {
    const bin = '/usr/bin/node /opt/askr-sidecar/bin/askr-sidecar.js';
    expect(directive('ExecStart')).toEqual([`${bin} serve --config /etc/askr/sidecar.toml`]);
    expect(directive('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(directive('User')).toEqual(['askr']);
    const env = Object.fromEntries(
      directive('Environment').map((e) => [
        e.slice(0, e.indexOf('=')),
        e.slice(e.indexOf('=') + 1),
      ]),
    );
    const resolved = await checkConfig(join(ROOT, 'deploy/systemd/sidecar.toml'), env);
    // The socket lives in the unit's RuntimeDirectory, given to php-fpm's group.
    expect(dirname(resolved.broadcast.socket)).toBe(
      `/run/${directive('RuntimeDirectory')[0] ?? ''}`,
    );
    expect(directive('SupplementaryGroups')).toEqual([resolved.broadcast.socket_group]);
    expect(resolved.fastcgi.address).toBe('unix:/run/php/php8.2-fpm.sock');
  });
});

describe('deploy/grafana/askr-sidecar.json', () => {
  /** What the sidecar exports and the dashboard may query (histograms as _bucket). */
  const EXPORTED = new Set([
    ...['askr_http_requests_total', 'askr_http_request_duration_seconds_bucket'],
    ...['askr_fastcgi_connections', 'askr_fastcgi_queue_length'],
    ...['askr_fastcgi_queue_wait_seconds_bucket', 'askr_fastcgi_upstream_duration_seconds_bucket'],
    ...['askr_fastcgi_timeouts_total', 'askr_sse_connections', 'askr_sse_channels'],
    ...['askr_events_published_total', 'askr_events_delivered_total'],
    ...['askr_delivery_lag_seconds_bucket', 'askr_sse_slow_consumer_disconnects_total'],
    ...['askr_rejected_requests_total', 'askr_rejected_datagrams_total'],
    ...['askr_fpm_processes', 'askr_fpm_listen_queue', 'askr_fpm_max_children_reached_total'],
    ...['askr_fpm_accepted_connections_total', 'askr_fpm_slow_requests_total'],
    ...['askr_fpm_status_scrape_errors_total', 'askr_fpm_restarts_total'],
    ...['askr_http_client_connections', 'askr_http_client_connections_accepted_total'],
    ...['askr_build_info', 'process_resident_memory_bytes'],
    ...['askr_cluster_bus_up', 'askr_cluster_published_total', 'askr_cluster_received_total'],
    ...['askr_cluster_local_only_total', 'askr_cluster_lag_seconds_bucket'],
    ...['askr_cluster_errors_total', 'askr_cluster_reconnects_total'],
    ...['askr_relay_forwarded_total', 'askr_relay_dropped_total', 'askr_relay_buffered'],
  ]);
  const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
  /** Identifiers of a PromQL expression that are neither labels, functions nor keywords. */
  function metricNames(expr: string): string[] {
    const bare = expr
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/\{[^}]*\}|\[[^\]]*\]/g, ' ')
      .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
      .replace(/\b\d+(\.\d+)?(e[+-]?\d+)?\b/gi, ' ');
    return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
      .filter(
        (m) =>
          !bare
            .slice((m.index ?? 0) + m[0].length)
            .trimStart()
            .startsWith('('),
      )
      .map((m) => m[0])
      .filter((name) => !KEYWORDS.has(name.toLowerCase()));
  }
  const dashboard = JSON.parse(read('deploy/grafana/askr-sidecar.json')) as unknown;
  const panels = recs(get(dashboard, 'panels'));
  const variables = recs(get(dashboard, 'templating', 'list'));

  it('has a Prometheus datasource variable that every panel and query uses', () => {
    const ds = variables.find((v) => v['type'] === 'datasource');
    expect(ds?.['query']).toBe('prometheus');
    const uid = `\${${str(ds?.['name'])}}`;
    const graphs = panels.filter((p) => p['type'] !== 'row');
    expect(graphs.length).toBeGreaterThan(10);
    for (const panel of graphs) {
      expect(get(panel, 'datasource', 'uid'), str(panel['title'])).toBe(uid);
      for (const target of recs(panel['targets']))
        expect(get(target, 'datasource', 'uid')).toBe(uid);
    }
    expect(new Set(panels.map((p) => p['id'])).size).toBe(panels.length);
  });

  it('queries only exported metric names, and every one of them', () => {
    const exprs = panels.flatMap((p) => recs(p['targets'] ?? []).map((t) => str(t['expr'])));
    for (const v of variables.filter((x) => x['type'] === 'query')) {
      exprs.push(/^label_values\(([^,]+),/.exec(str(get(v, 'query', 'query')))?.[1] ?? '');
    }
    const used = new Set(exprs.flatMap(metricNames));
    expect([...used].filter((name) => !EXPORTED.has(name))).toEqual([]);
    expect([...EXPORTED].filter((name) => !used.has(name))).toEqual([]);
    // Each askr_* name is registered in src/observability, or by the relay in src/cluster
    // (process_* are prom-client defaults).
    const sources = ['src/observability', 'src/cluster']
      .flatMap((dir) =>
        readdirSync(join(ROOT, dir))
          .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
          .map((f) => read(`${dir}/${f}`)),
      )
      .join('\n');
    for (const name of [...EXPORTED].filter((n) => n.startsWith('askr_'))) {
      expect(sources, name).toContain(`'${name.replace(/_bucket$/, '')}'`);
    }
  });
});
