/**
 * Pieces of the cluster integration tests (test/cluster-*.test.ts): sidecars on a real Redis,
 * `askr-sidecar relay` in a child process, publishes from PHP (php/src/askr.php) and over HTTP,
 * and subscribed SSE streams. What a helper opens goes to the caller's `track` list (any array),
 * for the caller's afterEach/afterAll to close, also when the test failed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { expect, inject } from 'vitest';
import type { TestRedis } from './redis.ts';
import { APP_ROOT, startTestSidecar, type TestSidecar } from './sidecar.ts';
import { openStream, type SseStream } from './sse-client.ts';
import { until } from './wait.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/askr-sidecar.js', import.meta.url));
const SHIM = fileURLToPath(new URL('../../php/src/askr.php', import.meta.url));

/** Where a helper registers what it opened for the caller to close later (e.g. an array). */
export interface Tracker<T> {
  push(item: T): unknown;
}

export interface NodeOptions {
  /** `sse.publish_token`: the bearer token of HTTP publish. */
  token: string;
  /** More "section.key" overrides (e.g. the admin listener). */
  settings?: Record<string, string>;
  /** Gets the node once it joined. */
  track?: Tracker<TestSidecar>;
}

/**
 * A sidecar on the cluster with its own datagram socket (`<dir>/<nodeId>.sock`) and HTTP publish;
 * fails (and closes it) unless it joined.
 */
export async function startNode(
  redis: TestRedis,
  dir: string,
  nodeId: string,
  { token, settings = {}, track }: NodeOptions,
): Promise<TestSidecar> {
  const node = await startTestSidecar({
    'cluster.redis_url': redis.url,
    'cluster.node_id': nodeId,
    'broadcast.socket': join(dir, `${nodeId}.sock`),
    'sse.publish_token': token,
    'log.access_log': 'false',
    ...settings,
  });
  if (!node.logs.some((l) => l['msg'] === 'cluster: joined')) {
    await node.close();
    throw new Error(`${nodeId} did not join the cluster at start: ${JSON.stringify(node.logs)}`);
  }
  track?.push(node);
  return node;
}

export interface ChildNode {
  /** Base URL of its HTTP listener. */
  readonly url: string;
  /** SIGKILL (a crash: no goodbye to the cluster), resolved once it exited; idempotent. */
  kill(): Promise<void>;
}

/**
 * A sidecar on the cluster in its own process, so a test can SIGKILL it like a crashed pod. `env`
 * adds ASKR_* settings (e.g. ASKR_CLUSTER_PRESENCE_TTL). It goes to `track` as soon as it is
 * spawned; fails (and kills it) unless it logged that it listens within 20 s.
 */
export async function startChildNode(
  redis: TestRedis,
  nodeId: string,
  env: Record<string, string> = {},
  track?: Tracker<ChildNode>,
): Promise<ChildNode> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', '127.0.0.1:0', '--root', APP_ROOT, '--fpm', inject('fpmAddress')],
    {
      env: {
        ...process.env,
        ASKR_BROADCAST_SOCKET: '',
        ASKR_METRICS_ENABLED: 'false',
        ASKR_CLUSTER_REDIS_URL: redis.url,
        ASKR_CLUSTER_NODE_ID: nodeId,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = once(child, 'exit');
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  let out = '';
  const node = { url: '', kill };
  track?.push(node);
  try {
    node.url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"askr-sidecar listening"/.exec(out);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`exited early: ${out}`));
      });
    });
  } catch (err) {
    await kill();
    throw err;
  }
  return node;
}

export interface RelayProcess {
  readonly child: ChildProcess;
  /** `<dir>/relay.sock`. */
  readonly socketPath: string;
  /** Base URL of the admin listener (/metrics, /readyz); '' without `metrics`. */
  readonly adminUrl: string;
  /** Every stdout line (pino JSON) so far. */
  readonly lines: Array<Record<string, unknown>>;
  /** SIGTERM (after a SIGCONT, in case a test stopped it), SIGKILL after 5 s; idempotent. */
  stop(): Promise<void>;
}

export interface RelayOptions {
  redisUrl: string;
  /** The relay's cwd (a directory without sidecar.toml) and the directory of its socket. */
  dir: string;
  /** Starts its admin listener on a free port, and fails unless it logged its address. */
  metrics: boolean;
  /** More ASKR_* settings. */
  env?: Record<string, string>;
  /** Gets the relay as soon as it is spawned (before it started). */
  track?: Tracker<RelayProcess>;
}

/**
 * `askr-sidecar relay` through the pinned Node, once it logged that it forwards (bus up); fails
 * (and stops it) otherwise.
 */
export async function startRelay({
  redisUrl,
  dir,
  metrics,
  env = {},
  track,
}: RelayOptions): Promise<RelayProcess> {
  const socketPath = join(dir, 'relay.sock');
  // cwd: a directory without sidecar.toml, so only these flags and variables configure it.
  const child = spawn(
    process.execPath,
    [BIN, 'relay', '--redis', redisUrl, '--socket', socketPath],
    {
      cwd: dir,
      env: {
        ...process.env,
        ...(metrics
          ? { ASKR_METRICS_ENABLED: 'true', ASKR_METRICS_LISTEN: '127.0.0.1:0' }
          : { ASKR_METRICS_ENABLED: 'false' }),
        ASKR_CLUSTER_NODE_ID: 'relay-0',
        ASKR_LOG_LEVEL: 'info',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const lines: Array<Record<string, unknown>> = [];
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    let nl: number;
    while ((nl = output.indexOf('\n')) !== -1) {
      const line = output.slice(0, nl);
      output = output.slice(nl + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT'); // a test may have stopped it (SIGSTOP)
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const relay = { child, socketPath, adminUrl: '', lines, stop };
  track?.push(relay);
  const started = (): Record<string, unknown> | undefined =>
    lines.find((l) => l['msg'] === 'askr-sidecar relay: forwarding datagrams to the cluster');
  try {
    await until(
      () => started() !== undefined || child.exitCode !== null,
      20_000,
      'the relay to log that it forwards datagrams',
    );
  } catch (err) {
    await stop();
    throw new Error(
      `${(err as Error).message}; stdout: ${JSON.stringify(lines)}; stderr: ${stderr}`,
    );
  }
  const line = started();
  if (line?.['bus'] !== 'up' || (metrics && typeof line['metrics'] !== 'string')) {
    await stop();
    throw new Error(
      `the relay did not start on the bus${metrics ? ' with metrics' : ''}: ${JSON.stringify(lines)}; ${stderr}`,
    );
  }
  return metrics ? { ...relay, adminUrl: line['metrics'] as string } : relay;
}

/** Publishes each `data` in turn from one PHP CLI process through php/src/askr.php. */
export async function phpPublish(
  socketPath: string,
  channel: string,
  event: string,
  ...data: string[]
): Promise<void> {
  const code = `require ${JSON.stringify(SHIM)};
    foreach (array_slice($argv, 3) as $d) {
      if (!askr_publish($argv[1], $d, $argv[2])) { fwrite(STDERR, askr_last_error()); exit(1); }
    }`;
  await run('php', ['-r', code, '--', channel, event, ...data], {
    env: { ...process.env, ASKR_SOCKET: socketPath },
  });
}

/** POST /askr/publish on `node` with `token`; resolves the reply ({id, subscribers}) of a 202. */
export async function httpPublish(
  node: TestSidecar,
  token: string,
  channel: string,
  event: string,
  data: string,
): Promise<{ id: string; subscribers: number }> {
  const res = await request(
    `${node.url}/askr/publish?channel=${channel}&event=${encodeURIComponent(event)}`,
    { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: data },
  );
  const text = await res.body.text();
  if (res.statusCode !== 202) throw new Error(`publish answered ${res.statusCode}: ${text}`);
  return JSON.parse(text) as { id: string; subscribers: number };
}

/**
 * A stream of the events endpoint, once its first frame (`retry:`) shows it is subscribed. It goes
 * to `track` as soon as it is open.
 */
export async function subscribe(
  node: TestSidecar,
  channel: string,
  track: Tracker<SseStream>,
  headers: Record<string, string> = {},
): Promise<SseStream> {
  const st = await openStream(`${node.url}/askr/events?channel=${channel}`, headers);
  track.push(st);
  expect(st.status).toBe(200);
  await st.frame(0);
  return st;
}
