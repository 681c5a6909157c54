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
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { httpPublish, phpPublish, startNode, startRelay, subscribe } from './helpers/cluster.ts';
import type { RelayProcess } from './helpers/cluster.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import {
  CONNECTED_EVENT,
  connectedSocketId,
  type Frame,
  type SseStream,
} from './helpers/sse-client.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
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
  dir = await phpTempDir('askr-cluster-');
  redis = await startRedis();
  for (const name of ['node-0', 'node-1', 'node-2'])
    nodes.push(await startNode(redis, dir, name, { token: TOKEN }));
  relay = await startRelay({ redisUrl: redis.url, dir, metrics: false });
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

const ofEvent = (st: SseStream, event: string): Frame[] =>
  st.frames.filter((f) => f.event === event);

describe('cluster delivery', () => {
  it('a publish through the relay, any socket or any HTTP publish reaches every node once, with one id', async () => {
    const subscribed = await Promise.all(nodes.map((n) => subscribe(n, 'fanout', streams)));
    const replies: Array<{ id: string; subscribers: number; data: string }> = [];
    await phpPublish(relay?.socketPath ?? '', 'fanout', 'fanout', 'via-relay');
    for (const [i, node] of nodes.entries()) {
      await phpPublish(join(dir, `node-${i}.sock`), 'fanout', 'fanout', `via-socket-${i}`);
      const data = `via-http-${i}`;
      replies.push({ ...(await httpPublish(node, TOKEN, 'fanout', 'fanout', data)), data });
    }
    const expected = [
      'via-relay',
      ...nodes.flatMap((_, i) => [`via-socket-${i}`, `via-http-${i}`]),
    ].sort();
    // A last event after the seven: anything delivered twice would have come before it.
    await httpPublish(nodes[0] as TestSidecar, TOKEN, 'fanout', 'end', '');
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
    const st = await subscribe(node, 'echo', streams);
    const replies = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const started = Date.now();
        const reply = await httpPublish(node, TOKEN, 'echo', 'echo', `n${i}`);
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
    const subscribed = await Promise.all(nodes.map((n) => subscribe(n, 'burst', streams)));
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
    const reference = await subscribe(c, 'resume', streams);
    const first = await subscribe(a, 'resume', streams);
    for (const [i, node] of nodes.entries())
      await httpPublish(node, TOKEN, 'resume', 'resume', `e${i}`);
    await first.waitFor((f) => f.data === 'e2');
    expect(ofEvent(first, 'resume').map((f) => f.data)).toEqual(['e0', 'e1', 'e2']);
    const lastId = ofEvent(first, 'resume').at(-1)?.id ?? '';
    first.close();
    await until(() => a.hub.stats().connections === 0, 5000, 'node-0 to drop the closed stream');

    // Missed while away: published on every node and through the relay, and one event on a
    // channel the client does not follow.
    await httpPublish(b, TOKEN, 'resume', 'resume', 'm0');
    await httpPublish(c, TOKEN, 'resume-other', 'resume', 'not-followed');
    await httpPublish(c, TOKEN, 'resume', 'resume', 'm1');
    await httpPublish(a, TOKEN, 'resume', 'resume', 'm2');
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
      // askr:connected opens the stream; every other frame with an event is a replayed/live one.
      expect(connectedSocketId(st.frames)).toMatch(/^\d+\.\d+$/);
      const got = st.frames.filter((f) => f.event !== undefined && f.event !== CONNECTED_EVENT);
      expect(got.map((f) => [f.event, f.id, f.data])).toEqual(
        after.map((f) => ['resume', f.id, f.data]),
      );
    };

    // node-1 saw the missed events live.
    const onB = await subscribe(b, 'resume', streams, { 'last-event-id': lastId });
    await httpPublish(c, TOKEN, 'resume', 'resume', 'live0');
    await httpPublish(a, TOKEN, 'resume', 'resume', 'live1');
    await expectResumed(onB, 'live1', ['m0', 'm1', 'm2', 'm3', 'live0', 'live1']);

    // node-3 joins after all of them: they can only come from Redis's shared history.
    const late = await startNode(redis as TestRedis, dir, 'node-3', { token: TOKEN });
    extraNodes.push(late);
    const onD = await subscribe(late, 'resume', streams, { 'last-event-id': lastId });
    await httpPublish(b, TOKEN, 'resume', 'resume', 'live2');
    await expectResumed(onD, 'live2', ['m0', 'm1', 'm2', 'm3', 'live0', 'live1', 'live2']);
  });
});
