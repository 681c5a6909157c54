/**
 * The cluster while its real redis-server is down (SIGKILL, then a restart on the same port):
 * sidecars keep their streams, deliver publishes locally, say "degraded" on /readyz, reconnect by
 * themselves and tell every open stream `askr:lost` (reason "bus"); a relay buffers what PHP sends
 * meanwhile (the newest `cluster.relay_buffer`, the oldest dropped and counted) and sends it in
 * order once Redis is back. A regression looks like: streams cut when Redis dies, a publish lost
 * or refused during the outage, a node that stays local after Redis is back (events of one node
 * never reach the other), no `askr:lost`, or relayed events missing, reordered or over-counted.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { httpPublish, phpPublish, startNode, startRelay, subscribe } from './helpers/cluster.ts';
import type { NodeOptions, RelayProcess } from './helpers/cluster.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import type { Frame, SseStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

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

/** Nodes of these tests: with the admin listener, and closed by afterEach. */
const NODE: NodeOptions = {
  token: TOKEN,
  settings: { 'metrics.enabled': 'true', 'metrics.listen': '127.0.0.1:0' },
  track: sidecars,
};

async function tempDir(): Promise<string> {
  const dir = await phpTempDir('askr-cluster-outage-');
  dirs.push(dir);
  return dir;
}

async function redisServer(): Promise<TestRedis> {
  const redis = await startRedis();
  redises.push(redis);
  return redis;
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
    const a = await startNode(redis, dir, 'node-a', NODE);
    const b = await startNode(redis, dir, 'node-b', NODE);
    const onA = await subscribe(a, 'outage', streams);
    const onB = await subscribe(b, 'outage', streams);
    await httpPublish(a, TOKEN, 'outage', 'outage', 'before');
    await Promise.all([onA, onB].map((st) => st.waitFor((f) => f.data === 'before')));
    // Regression: a publish that went through the bus was not counted by the node that took it.
    const published = async (node: typeof a): Promise<string | undefined> => {
      const res = await request(`${node.adminUrl ?? ''}/metrics`);
      return /^askr_events_published_total\{ingress="http"\} (\S+)$/m.exec(
        await res.body.text(),
      )?.[1];
    };
    expect([await published(a), await published(b)]).toEqual(['1', '0']);

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
    const local = await httpPublish(a, TOKEN, 'outage', 'outage', 'only-on-a');
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
    await httpPublish(a, TOKEN, 'outage', 'outage', 'after-from-a');
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
    const node = await startNode(redis, dir, 'node-a', NODE);
    const relay = await startRelay({
      redisUrl: redis.url,
      dir,
      metrics: true,
      env: { ASKR_CLUSTER_RELAY_BUFFER: '5' },
      track: relays,
    });
    const st = await subscribe(node, 'relayed', streams);
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
