/**
 * A cluster on a real redis-server: three sidecars (in-process) and a relay (`askr-sidecar relay`
 * in a child process). A publish through any ingress (PHP to the relay's socket, PHP to a
 * sidecar's socket, HTTP publish) reaches the streams of every sidecar once, with the same id
 * everywhere; a 10,000-event burst from 8 PHP processes arrives complete and in per-publisher
 * order on every node; a client resumes on another node, and on a node started after the events,
 * with Last-Event-ID. A regression looks like: an event missing on the nodes that did not take the
 * publish (delivered locally only), an event twice on the publishing node (local delivery plus the
 * bus echo), ids differing between nodes, or a resume on another node answered with `askr:lost`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type Frame, type SseStream } from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../bin/askr-sidecar.js', import.meta.url));
const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
const BURST = fileURLToPath(new URL('../fixtures-php/publish/burst.php', import.meta.url));
const TOKEN = 'cluster-delivery-token';
/** Event ids of the cluster: `<epoch>-<seq>@<channel>`, the epoch being Redis's `askr:epoch`. */
const CLUSTER_ID = /^([0-9a-f]{8})-(\d+)@([\w.=-]+)$/;

let redis: TestRedis | undefined;
let dir = '';
let relay: RelayProcess | undefined;
/** The three nodes every test uses (started once). */
const nodes: TestSidecar[] = [];
/** Nodes and streams a test started: afterEach closes them, also when the test failed. */
const extraNodes: TestSidecar[] = [];
const streams: SseStream[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'askr-cluster-'));
  redis = await startRedis();
  for (const name of ['node-0', 'node-1', 'node-2']) nodes.push(await startNode(redis, name));
  relay = await startRelayProcess(redis.url, join(dir, 'relay.sock'));
});
afterEach(async () => {
  for (const st of streams.splice(0)) st.close();
  await Promise.all(extraNodes.splice(0).map((n) => n.close()));
});
afterAll(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  await relay?.stop();
  await redis?.stop();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** A sidecar on the cluster with its own datagram socket and HTTP publish; fails unless it joined. */
async function startNode(on: TestRedis, nodeId: string): Promise<TestSidecar> {
  const node = await startTestSidecar({
    'cluster.redis_url': on.url,
    'cluster.node_id': nodeId,
    'broadcast.socket': join(dir, `${nodeId}.sock`),
    'sse.publish_token': TOKEN,
    'log.access_log': 'false',
  });
  if (!node.logs.some((l) => l['msg'] === 'cluster: joined')) {
    await node.close();
    throw new Error(`${nodeId} did not join the cluster at start: ${JSON.stringify(node.logs)}`);
  }
  return node;
}

interface RelayProcess {
  readonly socketPath: string;
  /** Every stdout line (pino JSON) so far. */
  readonly lines: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** `askr-sidecar relay` through the pinned Node, once it logged that it forwards (bus up). */
async function startRelayProcess(redisUrl: string, socketPath: string): Promise<RelayProcess> {
  // cwd: a directory without sidecar.toml, so only these flags and variables configure it.
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, 'relay', '--redis', redisUrl, '--socket', socketPath],
    {
      cwd: dir,
      env: {
        ...process.env,
        ASKR_METRICS_ENABLED: 'false',
        ASKR_CLUSTER_NODE_ID: 'relay-0',
        ASKR_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const lines: Array<Record<string, unknown>> = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    let nl: number;
    while ((nl = output.indexOf('\n')) !== -1) {
      const line = output.slice(0, nl);
      output = output.slice(nl + 1);
      if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
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
  if (started()?.['bus'] !== 'up') {
    await stop();
    throw new Error(`the relay did not start on the bus: ${JSON.stringify(lines)}; ${stderr}`);
  }
  return { socketPath, lines, stop };
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
async function subscribe(
  node: TestSidecar,
  channel: string,
  headers: Record<string, string> = {},
): Promise<SseStream> {
  const st = await openStream(`${node.url}/askr/events?channel=${channel}`, headers);
  streams.push(st);
  expect(st.status).toBe(200);
  await st.frame(0);
  return st;
}

const ofEvent = (st: SseStream, event: string): Frame[] =>
  st.frames.filter((f) => f.event === event);

describe('cluster delivery', () => {
  it('a publish through the relay, any socket or any HTTP publish reaches every node once, with one id', async () => {
    const subscribed = await Promise.all(nodes.map((n) => subscribe(n, 'fanout')));
    const replies: Array<{ id: string; subscribers: number; data: string }> = [];
    await phpPublish(relay?.socketPath ?? '', 'fanout', 'fanout', 'via-relay');
    for (const [i, node] of nodes.entries()) {
      await phpPublish(join(dir, `node-${i}.sock`), 'fanout', 'fanout', `via-socket-${i}`);
      const data = `via-http-${i}`;
      replies.push({ ...(await httpPublish(node, 'fanout', 'fanout', data)), data });
    }
    const expected = [
      'via-relay',
      ...nodes.flatMap((_, i) => [`via-socket-${i}`, `via-http-${i}`]),
    ].sort();
    // A last event after the seven: anything delivered twice would have come before it.
    await httpPublish(nodes[0] as TestSidecar, 'fanout', 'end', '');
    await Promise.all(subscribed.map((st) => st.waitFor((f) => f.event === 'end', 10_000)));

    const epoch = (await redis?.cli('GET', 'askr:epoch'))?.trim();
    const seen = subscribed.map((st) => ofEvent(st, 'fanout').map((f) => [f.id, f.data]));
    for (const [i, events] of seen.entries()) {
      expect({ node: i, data: events.map(([, d]) => d).sort() }).toEqual({
        node: i,
        data: expected,
      });
      // The same events, ids and order on every node.
      expect(events).toEqual(seen[0]);
    }
    let last = 0;
    for (const [id] of seen[0] ?? []) {
      const m = CLUSTER_ID.exec(id ?? '');
      expect(m?.[1], `id ${id ?? ''} is of the cluster epoch`).toBe(epoch);
      expect(m?.[3]).toBe('fanout');
      expect(Number(m?.[2])).toBeGreaterThan(last);
      last = Number(m?.[2]);
    }
    // HTTP publish answers with the cluster id the streams show, and counts its own node's stream.
    for (const reply of replies) {
      expect(reply.subscribers).toBe(1);
      expect(seen[0]).toContainEqual([`${reply.id}@fanout`, reply.data]);
    }
  });

  // Regression: a node learns its event's seq from the publish script's reply, and its own copy
  // comes back on the pub/sub connection, which can overtake that reply. A recurrence: some
  // HTTP publishes answer only after the 5 s echo wait, with "subscribers": 0.
  it('HTTP publish answers with the subscriber count of its node even when the bus message overtakes the reply', async () => {
    const node = nodes[0] as TestSidecar;
    const st = await subscribe(node, 'echo');
    const replies = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const started = Date.now();
        const reply = await httpPublish(node, 'echo', 'echo', `n${i}`);
        return { i, id: reply.id, subscribers: reply.subscribers, ms: Date.now() - started };
      }),
    );
    await st.waitFor((f) => f.data === 'n199', 10_000);
    expect(ofEvent(st, 'echo')).toHaveLength(200);
    const wrong = replies.filter((r) => r.subscribers !== 1);
    expect(
      wrong.length,
      `${wrong.length} of 200 replies did not count the stream, e.g. ${JSON.stringify(wrong.slice(0, 3))}`,
    ).toBe(0);
  });

  it('10,000 publishes from 8 PHP processes over every node and the relay arrive complete and in order on every node', async () => {
    const subscribed = await Promise.all(nodes.map((n) => subscribe(n, 'burst')));
    const sockets = [relay?.socketPath ?? '', ...nodes.map((_, i) => join(dir, `node-${i}.sock`))];
    // Publisher p writes "p:0" … "p:1249" to one socket: the relay, node-0, node-1, node-2, the relay, …
    await Promise.all(
      Array.from({ length: 8 }, (_, p) =>
        run('php', [BURST, String(p), '1250'], {
          env: { ...process.env, ASKR_SOCKET: sockets[p % sockets.length] },
        }),
      ),
    );
    const counts = (): number[] => subscribed.map((st) => ofEvent(st, 'burst').length);
    await until(
      () => counts().every((c) => c >= 10_000),
      60_000,
      'every node to receive the 10,000 events',
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; received per node: ${counts().join(', ')}`);
    });
    const orders = subscribed.map((st) => ofEvent(st, 'burst').map((f) => f.id));
    for (const [i, st] of subscribed.entries()) {
      const events = ofEvent(st, 'burst');
      expect({ node: i, count: events.length }).toEqual({ node: i, count: 10_000 });
      const next = new Array<number>(8).fill(0);
      for (const f of events) {
        const [publisher = -1, n = -1] = (f.data ?? '').split(':').map(Number);
        expect({ node: i, publisher, n }).toEqual({ node: i, publisher, n: next[publisher] });
        next[publisher] = n + 1;
      }
      expect(next).toEqual(new Array<number>(8).fill(1250));
      // One cluster order: every node has the same ids in the same order.
      expect(orders[i]).toEqual(orders[0]);
    }
  });

  it('a client resumes with Last-Event-ID on another node, and on a node started after the missed events', async () => {
    const [a, b, c] = nodes as [TestSidecar, TestSidecar, TestSidecar];
    // Follows the channel live all along: the reference of the channel's ids and order.
    const reference = await subscribe(c, 'resume');
    const first = await subscribe(a, 'resume');
    for (const [i, node] of nodes.entries()) await httpPublish(node, 'resume', 'resume', `e${i}`);
    await first.waitFor((f) => f.data === 'e2');
    expect(ofEvent(first, 'resume').map((f) => f.data)).toEqual(['e0', 'e1', 'e2']);
    const lastId = ofEvent(first, 'resume').at(-1)?.id ?? '';
    first.close();
    await until(() => a.hub.stats().connections === 0, 5000, 'node-0 to drop the closed stream');

    // Missed while away: published on every node and through the relay, and one event on a
    // channel the client does not follow.
    await httpPublish(b, 'resume', 'resume', 'm0');
    await httpPublish(c, 'resume-other', 'resume', 'not-followed');
    await httpPublish(c, 'resume', 'resume', 'm1');
    await httpPublish(a, 'resume', 'resume', 'm2');
    await phpPublish(relay?.socketPath ?? '', 'resume', 'resume', 'm3');
    // The relay's publish has no reply: it is in the cluster once a node received it.
    await reference.waitFor((f) => f.data === 'm3', 10_000);

    /** `st` got exactly the reference's events after lastId, with their ids, and no askr:lost. */
    const expectResumed = async (
      st: SseStream,
      lastData: string,
      data: string[],
    ): Promise<void> => {
      await st.waitFor((f) => f.data === lastData, 10_000);
      await reference.waitFor((f) => f.data === lastData, 10_000);
      const all = ofEvent(reference, 'resume');
      const after = all.slice(all.findIndex((f) => f.id === lastId) + 1);
      expect(after.map((f) => f.data)).toEqual(data);
      const got = st.frames.filter((f) => f.event !== undefined);
      expect(got.map((f) => [f.event, f.id, f.data])).toEqual(
        after.map((f) => ['resume', f.id, f.data]),
      );
    };

    // node-1 saw the missed events live.
    const onB = await subscribe(b, 'resume', { 'last-event-id': lastId });
    await httpPublish(c, 'resume', 'resume', 'live0');
    await httpPublish(a, 'resume', 'resume', 'live1');
    await expectResumed(onB, 'live1', ['m0', 'm1', 'm2', 'm3', 'live0', 'live1']);

    // node-3 joins after all of them: they can only come from Redis's shared history.
    const late = await startNode(redis as TestRedis, 'node-3');
    extraNodes.push(late);
    const onD = await subscribe(late, 'resume', { 'last-event-id': lastId });
    await httpPublish(b, 'resume', 'resume', 'live2');
    await expectResumed(onD, 'live2', ['m0', 'm1', 'm2', 'm3', 'live0', 'live1', 'live2']);
  });
});
