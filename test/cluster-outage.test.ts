/**
 * The cluster while its real redis-server is down (SIGKILL, then a restart on the same port):
 * sidecars keep their streams, deliver publishes locally, say "degraded" on /readyz, reconnect by
 * themselves and tell every open stream `askr:lost` (reason "bus"); a relay buffers what PHP sends
 * meanwhile (the newest `cluster.relay_buffer`, the oldest dropped and counted) and sends it in
 * order once Redis is back. A regression looks like: streams cut when Redis dies, a publish lost
 * or refused during the outage, a node that stays local after Redis is back (events of one node
 * never reach the other), no `askr:lost`, or relayed events missing, reordered or over-counted.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type Frame, type SseStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
const TOKEN = 'cluster-outage-token';
const LOST_REDIS = 'cluster: lost Redis; delivering on this node only until it is back';

/** Everything a test started, stopped by afterEach in reverse order, also when the test failed. */
const redises: TestRedis[] = [];
const sidecars: TestSidecar[] = [];
const relays: RelayProcess[] = [];
const streams: SseStream[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const st of streams.splice(0)) st.close();
  await Promise.all(sidecars.splice(0).map((s) => s.close()));
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  await Promise.all(redises.splice(0).map((r) => r.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'askr-cluster-outage-'));
  dirs.push(dir);
  return dir;
}

async function redisServer(): Promise<TestRedis> {
  const redis = await startRedis();
  redises.push(redis);
  return redis;
}

/** A sidecar on the cluster with a datagram socket, HTTP publish and the admin listener. */
async function startNode(redis: TestRedis, dir: string, nodeId: string): Promise<TestSidecar> {
  const node = await startTestSidecar({
    'cluster.redis_url': redis.url,
    'cluster.node_id': nodeId,
    'broadcast.socket': join(dir, `${nodeId}.sock`),
    'sse.publish_token': TOKEN,
    'metrics.enabled': 'true',
    'metrics.listen': '127.0.0.1:0',
    'log.access_log': 'false',
  });
  sidecars.push(node);
  if (!node.logs.some((l) => l['msg'] === 'cluster: joined')) {
    throw new Error(`${nodeId} did not join the cluster at start: ${JSON.stringify(node.logs)}`);
  }
  return node;
}

interface RelayProcess {
  readonly child: ChildProcess;
  readonly socketPath: string;
  readonly adminUrl: string;
  /** Every stdout line (pino JSON) so far. */
  readonly lines: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * `askr-sidecar relay` through the pinned Node with its admin listener on a free port, once it
 * logged that it forwards (bus up). `env` adds ASKR_* settings.
 */
async function startRelayProcess(
  redis: TestRedis,
  dir: string,
  env: Record<string, string>,
): Promise<RelayProcess> {
  const socketPath = join(dir, 'relay.sock');
  // cwd: a directory without sidecar.toml, so only these flags and variables configure it.
  const child = spawn(
    process.execPath,
    [BIN, 'relay', '--redis', redis.url, '--socket', socketPath],
    {
      cwd: dir,
      env: {
        ...process.env,
        ASKR_METRICS_ENABLED: 'true',
        ASKR_METRICS_LISTEN: '127.0.0.1:0',
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
  const partial = { child, socketPath, adminUrl: '', lines, stop };
  relays.push(partial);
  const started = (): Record<string, unknown> | undefined =>
    lines.find((l) => l['msg'] === 'askr-sidecar relay: forwarding datagrams to the cluster');
  await until(
    () => started() !== undefined || child.exitCode !== null,
    20_000,
    'the relay to log that it forwards datagrams',
  ).catch((err: unknown) => {
    throw new Error(
      `${(err as Error).message}; stdout: ${JSON.stringify(lines)}; stderr: ${stderr}`,
    );
  });
  const line = started();
  if (line?.['bus'] !== 'up' || typeof line['metrics'] !== 'string') {
    throw new Error(
      `the relay did not start on the bus with metrics: ${JSON.stringify(lines)}; ${stderr}`,
    );
  }
  return { ...partial, adminUrl: line['metrics'] };
}

/** Publishes each `data` in turn from one PHP CLI process through php/src/askr.php. */
async function phpPublish(
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

/** POST /askr/publish on `node`; resolves the reply ({id, subscribers}) of a 202. */
async function httpPublish(
  node: TestSidecar,
  channel: string,
  event: string,
  data: string,
): Promise<{ id: string; subscribers: number }> {
  const res = await request(
    `${node.url}/askr/publish?channel=${channel}&event=${encodeURIComponent(event)}`,
    { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: data },
  );
  const text = await res.body.text();
  if (res.statusCode !== 202) throw new Error(`publish answered ${res.statusCode}: ${text}`);
  return JSON.parse(text) as { id: string; subscribers: number };
}

/** A stream of the events endpoint, once its first frame (`retry:`) shows it is subscribed. */
async function subscribe(node: TestSidecar, channel: string): Promise<SseStream> {
  const st = await openStream(`${node.url}/askr/events?channel=${channel}`);
  streams.push(st);
  expect(st.status).toBe(200);
  await st.frame(0);
  return st;
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url);
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

async function metric(adminUrl: string, name: string): Promise<number | null> {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m?.[1] === undefined ? null : Number(m[1]);
}

/** until() for a condition only an HTTP request can tell (a scrape): polled every 20 ms. */
async function untilAsync(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const logged = (node: TestSidecar, msg: string): boolean => node.logs.some((l) => l['msg'] === msg);
const dataOf = (st: SseStream, event: string): Array<string | undefined> =>
  st.frames.filter((f) => f.event === event).map((f) => f.data);
const isLostBus = (f: Frame): boolean =>
  f.event === 'askr:lost' && (JSON.parse(f.data ?? '{}') as { reason?: string }).reason === 'bus';

describe('cluster: Redis outage', () => {
  it('sidecars keep their streams, deliver locally, say degraded, then reconnect and send askr:lost', async () => {
    const dir = await tempDir();
    const redis = await redisServer();
    const a = await startNode(redis, dir, 'node-a');
    const b = await startNode(redis, dir, 'node-b');
    const onA = await subscribe(a, 'outage');
    const onB = await subscribe(b, 'outage');
    await httpPublish(a, 'outage', 'outage', 'before');
    await Promise.all([onA, onB].map((st) => st.waitFor((f) => f.data === 'before')));

    await redis.kill();
    await until(
      () => logged(a, LOST_REDIS) && logged(b, LOST_REDIS),
      10_000,
      'both nodes to notice that Redis is gone',
    );
    const ready = await getJson(`${a.adminUrl ?? ''}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body['status']).toBe('degraded');
    expect(ready.body['degraded']).toMatchObject({ cluster: { ok: false } });

    // Each node delivers what it receives to its own streams, under a local epoch. Its seqs start
    // again at 1, the seq "before" had on a fresh Redis: the stream must still get the event.
    const local = await httpPublish(a, 'outage', 'outage', 'only-on-a');
    expect(local.subscribers, `node-a's stream got the local publish (${local.id})`).toBe(1);
    expect(local.id).toMatch(/^l[0-9a-z]+-\d+$/);
    await onA.waitFor((f) => f.data === 'only-on-a');
    await phpPublish(join(dir, 'node-b.sock'), 'outage', 'outage', 'only-on-b');
    await onB.waitFor((f) => f.data === 'only-on-b');
    expect(await metric(a.adminUrl ?? '', 'askr_cluster_local_only_total')).toBe(1);
    expect([a.hub.stats().connections, b.hub.stats().connections]).toEqual([1, 1]);

    await redis.restart();
    // The same sidecars, never restarted: they reconnect and tell their open streams.
    const [lostA, lostB] = await Promise.all([
      onA.waitFor(isLostBus, 30_000),
      onB.waitFor(isLostBus, 30_000),
    ]);
    expect(lostA.id).toMatch(/^[0-9a-f]{8}-\d+$/);
    expect(lostB.id).toMatch(/^[0-9a-f]{8}-\d+$/);
    expect((await getJson(`${a.adminUrl ?? ''}/readyz`)).body['status']).toBe('ok');

    // Redis came back empty: the cluster's seqs start at 1 again, as the local ones did.
    await httpPublish(a, 'outage', 'outage', 'after-from-a');
    await phpPublish(join(dir, 'node-b.sock'), 'outage', 'outage', 'after-from-b');
    await Promise.all([onA, onB].map((st) => st.waitFor((f) => f.data === 'after-from-b', 10_000)));
    expect(dataOf(onA, 'outage')).toEqual(['before', 'only-on-a', 'after-from-a', 'after-from-b']);
    expect(dataOf(onB, 'outage')).toEqual(['before', 'only-on-b', 'after-from-a', 'after-from-b']);
    // After the outage the ids are the cluster's again (Redis came back empty: a new epoch).
    const epoch = (await redis.cli('GET', 'askr:epoch')).trim();
    const afterIds = (st: SseStream): Array<string | undefined> =>
      st.frames.filter((f) => f.data?.startsWith('after-') === true).map((f) => f.id);
    expect(afterIds(onA)).toEqual(afterIds(onB));
    for (const id of afterIds(onA)) expect(id).toMatch(new RegExp(`^${epoch}-\\d+@outage$`));
  });

  it('a relay buffers the newest cluster.relay_buffer datagrams while Redis is down and sends them in order', async () => {
    const dir = await tempDir();
    const redis = await redisServer();
    const node = await startNode(redis, dir, 'node-a');
    const relay = await startRelayProcess(redis, dir, { ASKR_CLUSTER_RELAY_BUFFER: '5' });
    const st = await subscribe(node, 'relayed');
    await phpPublish(relay.socketPath, 'relayed', 'relayed', 'before');
    await st.waitFor((f) => f.data === 'before');

    await redis.kill();
    await until(
      () =>
        logged(node, LOST_REDIS) &&
        relay.lines.some(
          (l) => l['msg'] === 'relay: lost Redis; buffering events until it is back',
        ),
      10_000,
      'the node and the relay to notice that Redis is gone',
    );
    // PHP's publishes succeed (the relay takes them); 8 for a buffer of 5.
    await phpPublish(
      relay.socketPath,
      'relayed',
      'relayed',
      ...['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'],
    );
    await untilAsync(
      async () => (await metric(relay.adminUrl, 'askr_relay_dropped_total')) === 3,
      10_000,
      'the relay to count 3 dropped events',
    );
    expect(await metric(relay.adminUrl, 'askr_relay_buffered')).toBe(5);
    const ready = await getJson(`${relay.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body['status']).toBe('degraded');

    // The relay waits (SIGSTOP) until the node is back on the bus: a relay reconnecting first
    // would send its buffer before the node subscribed again, and the stream would only get
    // askr:lost (documented: the page reloads its state). Here the order is made deterministic.
    relay.child.kill('SIGSTOP');
    try {
      await redis.restart();
      await st.waitFor(isLostBus, 30_000);
    } finally {
      relay.child.kill('SIGCONT');
    }
    await st.waitFor((f) => f.data === 'r7', 30_000);
    // r3 is seq 1 of the new (empty) Redis, like "before" was of the old one: it is delivered too.
    expect(dataOf(st, 'relayed')).toEqual(['before', 'r3', 'r4', 'r5', 'r6', 'r7']);
    const afterLost = st.frames.slice(st.frames.findIndex(isLostBus) + 1);
    expect(afterLost.map((f) => f.data)).toEqual(['r3', 'r4', 'r5', 'r6', 'r7']);
    const epoch = (await redis.cli('GET', 'askr:epoch')).trim();
    for (const f of afterLost) expect(f.id).toMatch(new RegExp(`^${epoch}-\\d+@relayed$`));
    expect(await metric(relay.adminUrl, 'askr_relay_dropped_total')).toBe(3);
    expect(await metric(relay.adminUrl, 'askr_relay_buffered')).toBe(0);
    expect(await metric(relay.adminUrl, 'askr_relay_forwarded_total')).toBe(6);
  });
});
