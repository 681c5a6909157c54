/**
 * The Mercure hub in a cluster: two sidecars (in-process) on one real redis-server, sharing
 * mercure.audience so that one token is valid on both. A Mercure publish made on node A reaches
 * Mercure subscribers (and askr streams) on node B with the id A answered; askr publishes (HTTP
 * publish and askr_publish from PHP) on A reach Mercure subscribers on B; privacy survives the bus;
 * a subscriber on B resumes with Last-Event-ID after an event published on A. A regression looks
 * like: an update only on the node that took the publish, twice on it (local delivery plus the bus
 * echo), a different id on B, a private update reaching an ungranted subscriber on B, or a resume
 * on B that misses or repeats events.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  httpPublish,
  phpPublish,
  startNode,
  subscribe as askrSubscribe,
} from './helpers/cluster.ts';
import {
  HUB_PATH,
  MERCURE_BASE,
  datas,
  detail,
  hubToken,
  publish,
  subscribe as hubSubscribe,
  type Fields,
  type MercureStream,
} from './helpers/mercure.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import type { SseStream } from './helpers/sse-client.ts';

const TOKEN = 'mercure-cluster-token';
/** One resource identifier for the whole cluster, as a deployment behind one name would set. */
const AUDIENCE = `https://hub.example${HUB_PATH}`;

let redis: TestRedis | undefined;
let dir = '';
let a: TestSidecar | undefined;
let b: TestSidecar | undefined;
const streams: SseStream[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'askr-mercure-cluster-'));
  redis = await startRedis();
  // startNode takes the TOML-style text of each setting.
  const settings: Record<string, string> = { 'mercure.audience': AUDIENCE };
  for (const [key, value] of Object.entries(MERCURE_BASE)) {
    settings[key] = Array.isArray(value) ? value.join(',') : String(value);
  }
  a = await startNode(redis, dir, 'node-a', { token: TOKEN, settings });
  b = await startNode(redis, dir, 'node-b', { token: TOKEN, settings });
});
afterEach(() => {
  for (const st of streams.splice(0)) st.close();
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await redis?.stop();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function nodes(): { a: TestSidecar; b: TestSidecar } {
  if (a === undefined || b === undefined) throw new Error('the cluster did not start');
  return { a, b };
}

/** A token of the cluster's audience with these authorization details. */
function clusterToken(details: unknown[]): Promise<string> {
  return hubToken(nodes().a, details, { aud: AUDIENCE });
}

/** A Mercure publish on `node`; resolves the id it answered. */
async function mercurePublish(node: TestSidecar, fields: Fields): Promise<string> {
  const res = await publish(node, fields, {
    token: await clusterToken([detail(['publish'], ['*'])]),
  });
  if (res.status !== 200)
    throw new Error(`publish on ${node.url} answered ${res.status}: ${res.body}`);
  return res.body;
}

/** A Mercure subscription on `node` the hub counts already; closed after the test. */
async function subscribe(
  node: TestSidecar,
  query: Fields,
  headers: Record<string, string> = {},
): Promise<MercureStream> {
  const st = await hubSubscribe(node, query, { headers });
  streams.push(st);
  expect(st.status, st.body).toBe(200);
  return st;
}

describe('Mercure across a cluster', () => {
  it('a Mercure publish on A reaches Mercure subscribers on B and on A, once, with the id A answered', async () => {
    const topic = 'https://example.com/books/1';
    const onB = await subscribe(nodes().b, { match: topic });
    const onA = await subscribe(nodes().a, { match: topic });
    const id = await mercurePublish(nodes().a, { topic, data: 'from A', type: 'book' });
    // A last update: anything delivered twice would have come before it.
    const end = await mercurePublish(nodes().a, { topic, data: 'end' });
    for (const st of [onB, onA]) {
      await st.update('end');
      expect(st.updates().map((f) => [f.id, f.event, f.data])).toEqual([
        [id, 'book', 'from A'],
        [end, undefined, 'end'],
      ]);
    }
  });

  it('a private update published on A reaches only the granted subscriber on B', async () => {
    const topic = 'https://example.com/users/42/inbox';
    const granted = await subscribe(
      nodes().b,
      { match: topic },
      { authorization: `Bearer ${await clusterToken([detail(['subscribe'], [topic])])}` },
    );
    const anonymous = await subscribe(nodes().b, { match: topic });
    await mercurePublish(nodes().a, { topic, data: 'secret', private: 'on' });
    await mercurePublish(nodes().a, { topic, data: 'public' });
    await granted.update('public');
    await anonymous.update('public');
    expect(datas(granted)).toEqual(['secret', 'public']);
    expect(datas(anonymous)).toEqual(['public']);
  });

  it('HTTP publish and askr_publish on A reach a Mercure subscriber of the channel on B', async () => {
    const onB = await subscribe(nodes().b, { match: 'orders' });
    const reply = await httpPublish(nodes().a, TOKEN, 'orders', 'order.created', '{"n":1}');
    await phpPublish(join(dir, 'node-a.sock'), 'orders', 'order.shipped', '{"n":2}');
    await onB.update('{"n":2}');
    expect(onB.updates().map((f) => [f.event, f.data])).toEqual([
      ['order.created', '{"n":1}'],
      ['order.shipped', '{"n":2}'],
    ]);
    // The askr event's id, in the hub's generated form (contract: `urn:askr:<epoch>-<seq>`).
    expect(onB.updates()[0]?.id).toBe(`urn:askr:${reply.id}`);
  });

  it('a Mercure publish on A reaches an askr stream of that channel on B', async () => {
    const askr = await askrSubscribe(nodes().b, 'invoices', streams);
    await mercurePublish(nodes().a, { topic: 'invoices', data: 'invoice 7' });
    expect(await askr.waitFor((f) => f.data === 'invoice 7')).toBeDefined();
  });

  it('askr private-* channels published on A are private for Mercure subscribers on B', async () => {
    const channel = 'private-orders.7';
    // Both also follow a public topic: its update, published after, closes the comparison.
    const query = { match: [channel, 'orders-marker'] };
    const granted = await subscribe(nodes().b, query, {
      authorization: `Bearer ${await clusterToken([detail(['subscribe'], [channel])])}`,
    });
    const anonymous = await subscribe(nodes().b, query);
    await httpPublish(nodes().a, TOKEN, channel, 'order', 'secret order');
    await mercurePublish(nodes().a, { topic: 'orders-marker', data: 'marker' });
    await granted.update('marker');
    await anonymous.update('marker');
    expect(datas(granted)).toEqual(['secret order', 'marker']);
    expect(datas(anonymous)).toEqual(['marker']);
  });

  it('a subscriber on B resumes with Last-Event-ID after an event published on A', async () => {
    const topic = 'https://example.com/books/resume';
    // Published while nobody is subscribed anywhere: B knows them from the bus only.
    const first = await mercurePublish(nodes().a, {
      topic,
      data: 'one',
      id: 'urn:uuid:0d1c9f2e-6c2b-4f5e-9a57-8f3f6c1b2a01',
    });
    const second = await mercurePublish(nodes().a, { topic, data: 'two' });
    await mercurePublish(nodes().a, { topic: 'https://example.com/unrelated', data: 'other' });
    const third = await mercurePublish(nodes().a, { topic, data: 'three' });

    const resumed = await subscribe(nodes().b, { match: topic }, { 'last-event-id': first });
    expect(resumed.headers['mercure-last-event-id']).toBe(first);
    await resumed.update('three');
    expect(resumed.updates().map((f) => [f.id, f.data])).toEqual([
      [second, 'two'],
      [third, 'three'],
    ]);

    // The query parameter form, from a generated id, on the other node too.
    for (const node of [nodes().b, nodes().a]) {
      const st = await subscribe(node, { match: topic, last_event_id: second });
      expect(st.headers['mercure-last-event-id']).toBe(second);
      await st.update('three');
      expect(datas(st)).toEqual(['three']);
    }

    // Live updates follow the replay on the resumed stream.
    await mercurePublish(nodes().a, { topic, data: 'four' });
    await resumed.update('four');
    expect(datas(resumed)).toEqual(['two', 'three', 'four']);
  });
});
