/**
 * The packaging and deploy recipes (Dockerfile, .dockerignore, deploy/**), checked without Docker,
 * Kubernetes or systemd: every example config passes `askr-sidecar check-config` with the
 * environment its recipe gives it; each recipe agrees with itself (socket directory shared by
 * both containers, FPM address, probe paths and ports); the image layout the Dockerfile assembles
 * runs dist/cli.js; the Grafana dashboard queries only metrics the sidecar exports.
 */
import { spawn } from 'node:child_process';
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
import { loadConfig } from '../src/config/load.ts';
import type { SidecarConfig } from '../src/config/schema.ts';

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

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
/** Runs a command to its end; `env` is added to this process's env minus every ASKR_* variable. */
async function run(argv: string[], env: Record<string, string>, cwd = scratch): Promise<Run> {
  const base = Object.entries(process.env).filter(([k]) => !k.startsWith('ASKR_'));
  const [cmd = '', ...args] = argv;
  const child = spawn(cmd, args, {
    cwd,
    env: { ...Object.fromEntries(base), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** `askr-sidecar check-config --config FILE` as users run it; returns the resolved config. */
async function checkConfig(file: string, env: Record<string, string>): Promise<SidecarConfig> {
  const result = await run([process.execPath, BIN, 'check-config', '--config', file], env);
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
    // README: `npm install`, then build (see the Dockerfile for why not `npm ci`).
    const readme = read('README.md');
    expect(readme).toContain('npm run build');
    expect(readme).toMatch(/npm (install|ci)/);
    expect(stepsOf(build, 'RUN').some((r) => /^npm install( |$)/.test(r))).toBe(true);
    expect(stepsOf(build, 'RUN')).toContain('npm run build');
    expect(get(JSON.parse(read('package.json')), 'scripts', 'build')).toBe(
      'tsc -p tsconfig.build.json',
    );
    // Production dependencies only: the pinned `node` devDependency is not installed.
    expect(stepsOf(FINAL, 'RUN').some((r) => r.startsWith('npm install --omit=dev'))).toBe(true);
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
    const check = (): Promise<Run> =>
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
    symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules')); // stands for `npm install --omit=dev`
    const entry = execForm(FINAL, 'ENTRYPOINT');
    const script = join(app, entry[entry.indexOf('node') + 1] ?? '');

    const version = await run([process.execPath, script, '--version'], IMAGE_ENV, app);
    expect(version.stdout.trim()).toBe(get(JSON.parse(read('package.json')), 'version'));
    const args = execForm(FINAL, 'CMD').map((a) =>
      a === 'serve' ? 'check-config' : a.startsWith('/') ? join(rootfs, a) : a,
    );
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

describe('deploy/docker-compose.yml', () => {
  const compose = yaml.load(read('deploy/docker-compose.yml'));
  const php = rec(get(compose, 'services', 'php-fpm'));
  const sidecar = rec(get(compose, 'services', 'sidecar'));
  /** Short-syntax mounts as [source, target]; bind sources resolved against deploy/. */
  const mounts = (service: Rec): Array<[string, string]> =>
    (service['volumes'] as unknown[]).map((v) => {
      const [source = '', target = ''] = str(v, 'volume').split(':');
      return [source.startsWith('.') ? resolve(ROOT, 'deploy', source) : source, target];
    });

  it('runs php:8.3-fpm, the sidecar built from the repository Dockerfile, Redis in a profile', () => {
    expect(php['image']).toBe('php:8.3-fpm');
    const dockerfile = resolve(
      ROOT,
      'deploy',
      str(get(sidecar, 'build', 'context')),
      str(get(sidecar, 'build', 'dockerfile')),
    );
    expect(dockerfile).toBe(join(ROOT, 'Dockerfile'));
    expect(get(compose, 'services', 'redis', 'profiles')).toEqual(['redis']);
  });

  it('passes check-config with the image and compose env; both containers agree', async () => {
    const config = mounts(sidecar).find(([, target]) => target === execForm(FINAL, 'CMD')[2]);
    expect(config?.[0]).toBe(join(ROOT, 'deploy/docker/sidecar.toml'));
    const env = { ...IMAGE_ENV, ...(rec(sidecar['environment']) as Record<string, string>) };
    const resolved = await checkConfig(join(ROOT, 'deploy/docker/sidecar.toml'), env);

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
  });
});

describe('deploy/kubernetes', () => {
  const docs = yaml.loadAll(read('deploy/kubernetes/deployment.yaml')).map((d) => rec(d));
  const byKind = (kind: string): Rec =>
    rec(
      docs.find((d) => d['kind'] === kind),
      kind,
    );
  const pod = rec(get(byKind('Deployment'), 'spec', 'template', 'spec'));
  const container = (name: string): Rec =>
    rec(
      recs(pod['containers']).find((c) => c['name'] === name),
      `container ${name}`,
    );
  const sidecar = container('sidecar');
  const php = container('php-fpm');
  const volume = (name: unknown): Rec =>
    rec(
      recs(pod['volumes']).find((v) => v['name'] === name),
      `volume ${String(name)}`,
    );
  const mountAt = (c: Rec, path: string): Rec | undefined =>
    recs(c['volumeMounts']).find((m) => m['mountPath'] === path);
  const portNumber = (port: unknown): number =>
    typeof port === 'number'
      ? port
      : Number(recs(sidecar['ports']).find((p) => p['name'] === port)?.['containerPort']);
  // The ConfigMap's sidecar.toml, as the sidecar container reads it.
  const configFile = join(scratch, 'k8s-sidecar.toml');
  writeFileSync(configFile, str(get(byKind('ConfigMap'), 'data', 'sidecar.toml')));
  const env = { ...IMAGE_ENV, ...envOf(sidecar) };

  it('runs the sidecar and php-fpm in one pod, the socket directory an emptyDir in both', async () => {
    const resolved = await checkConfig(configFile, env);
    const socketDir = dirname(resolved.broadcast.socket);
    const mount = mountAt(sidecar, socketDir);
    expect(volume(mount?.['name'])['emptyDir']).toBeDefined();
    expect(mountAt(php, socketDir)?.['name']).toBe(mount?.['name']);
    expect(envOf(php)['ASKR_SOCKET']).toBe(resolved.broadcast.socket);
    expect(resolved.fastcgi.address).toBe('127.0.0.1:9000');
    // The file the sidecar is told to read is the ConfigMap's sidecar.toml.
    const args = sidecar['args'] as string[];
    const configPath = args[args.indexOf('--config') + 1] ?? '';
    expect(basename(configPath)).toBe('sidecar.toml');
    const configVolume = volume(mountAt(sidecar, dirname(configPath))?.['name']);
    expect(get(configVolume, 'configMap', 'name')).toBe(
      get(byKind('ConfigMap'), 'metadata', 'name'),
    );
    // The pod's fsGroup owns the socket directory and is the socket's group.
    expect(String(get(pod, 'securityContext', 'fsGroup'))).toBe(resolved.broadcast.socket_group);
    expect(get(sidecar, 'securityContext', 'runAsNonRoot')).toBe(true);
  });

  it('wires liveness to /healthz and readiness to /readyz on the metrics port, and scraping', () => {
    const resolved = loadConfig({ file: configFile, env });
    const metricsPort = portOf(resolved.metrics.listen);
    expect(metricsPort).toBe(9100);
    expect(get(sidecar, 'livenessProbe', 'httpGet', 'path')).toBe('/healthz');
    expect(get(sidecar, 'readinessProbe', 'httpGet', 'path')).toBe('/readyz');
    expect(portNumber(get(sidecar, 'livenessProbe', 'httpGet', 'port'))).toBe(metricsPort);
    expect(portNumber(get(sidecar, 'readinessProbe', 'httpGet', 'port'))).toBe(metricsPort);
    expect(portNumber('http')).toBe(portOf(resolved.server.listen));
    expect(get(byKind('Deployment'), 'spec', 'template', 'metadata', 'annotations')).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(metricsPort),
      'prometheus.io/path': '/metrics',
    });
    const service = rec(byKind('Service')['spec']);
    const monitor = yaml.load(read('deploy/kubernetes/servicemonitor.yaml'));
    expect(get(monitor, 'kind')).toBe('ServiceMonitor');
    expect(get(monitor, 'spec', 'selector', 'matchLabels')).toEqual(service['selector']);
    const endpoint = recs(get(monitor, 'spec', 'endpoints'))[0];
    const servicePort = recs(service['ports']).find((p) => p['name'] === endpoint?.['port']);
    expect(portNumber(servicePort?.['targetPort'])).toBe(metricsPort);
    expect(endpoint?.['path']).toBe('/metrics');
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
    ...['askr_fpm_processes', 'askr_fpm_listen_queue', 'askr_fpm_max_children_reached'],
    ...['askr_fpm_restarts_total', 'process_resident_memory_bytes'],
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
    // Each askr_* name is registered in src/observability (process_* are prom-client defaults).
    const sources = readdirSync(join(ROOT, 'src/observability'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => read(`src/observability/${f}`))
      .join('\n');
    for (const name of [...EXPORTED].filter((n) => n.startsWith('askr_'))) {
      expect(sources, name).toContain(`'${name.replace(/_bucket$/, '')}'`);
    }
  });
});
