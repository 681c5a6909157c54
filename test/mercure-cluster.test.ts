/**
 * The Mercure hub in a cluster: two sidecars (in-process) on one real redis-server, sharing
 * mercure.audience so that one token is valid on both. A Mercure publish made on node A reaches
 * Mercure subscribers (and askr streams) on node B with the id A answered; askr publishes (HTTP
 * publish and askr_publish from PHP) on A reach Mercure subscribers on B; privacy survives the bus;
 * a subscriber on B resumes with Last-Event-ID after an event published on A. Active subscriptions
 * are the cluster's (kept in Redis): a node started later lists those opened before, a node killed
 * without a goodbye has its subscriptions ended (API and `active: false` event) by a live one. A
 * regression looks like: an update only on the node that took the publish, twice on it (local
 * delivery plus the bus echo), a different id on B, a private update reaching an ungranted
 * subscriber on B, a resume on B that misses or repeats events, a subscription missing from a late
 * node's API, a dead node's subscription listed forever or never announced as ended, or an end
 * announced twice.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  httpPublish,
  phpPublish,
  startChildNode,
  startNode,
  subscribe as askrSubscribe,
} from './helpers/cluster.ts';
import {
  HUB_PATH,
  MERCURE_BASE,
  datas,
  detail,
  eventually,
  get,
  hubToken,
  publish,
  subscribe as hubSubscribe,
  urlpattern,
  type Fields,
  type MercureStream,
} from './helpers/mercure.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import { openStream, type Frame, type SseStream } from './helpers/sse-client.ts';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';

const TOKEN = 'mercure-cluster-token';
/** One resource identifier for the whole cluster, as a deployment behind one name would set. */
const AUDIENCE = `https://hub.example${HUB_PATH}`;

let redis: TestRedis | undefined;
let dir = '';
let a: TestSidecar | undefined;
let b: TestSidecar | undefined;
const streams: SseStream[] = [];

/** The hub's settings on every node, as the TOML-style text startNode takes. */
function hubSettings(): Record<string, string> {
  const settings: Record<string, string> = { 'mercure.audience': AUDIENCE };
  for (const [key, value] of Object.entries(MERCURE_BASE)) {
    settings[key] = Array.isArray(value) ? value.join(',') : String(value);
  }
  return settings;
}

beforeAll(async () => {
  dir = await phpTempDir('askr-mercure-cluster-');
  redis = await startRedis();
  a = await startNode(redis, dir, 'node-a', { token: TOKEN, settings: hubSettings() });
  b = await startNode(redis, dir, 'node-b', { token: TOKEN, settings: hubSettings() });
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

describe('Mercure active subscriptions across a cluster', () => {
  const SUBS = `${HUB_PATH}/subscriptions`;
  const cleanups: Cleanups = [];
  afterEach(() => runCleanups(cleanups));
  /** Each test gets its own cluster on the shared redis-server: its own key prefix. */
  let clusters = 0;

  interface SubscriptionDoc {
    id: string;
    match: string;
    subscriber: string;
    active: boolean;
  }

  /** Hub settings with active subscriptions and a 1 s presence_ttl, on the cluster `prefix`. */
  function subsSettings(prefix: string): Record<string, string> {
    return {
      ...hubSettings(),
      'mercure.subscriptions': 'true',
      'cluster.key_prefix': prefix,
      'cluster.presence_ttl': '1s',
    };
  }

  function redisServer(): TestRedis {
    if (redis === undefined) throw new Error('redis-server did not start');
    return redis;
  }

  async function subsNode(
    prefix: string,
    nodeId: string,
    server = redisServer(),
  ): Promise<TestSidecar> {
    return startNode(server, dir, nodeId, {
      token: TOKEN,
      settings: subsSettings(prefix),
      track: { push: (n: TestSidecar) => cleanups.push(() => n.close()) },
    });
  }

  /** A subscriber of every subscription event (and of the public topic `marker`). */
  async function observer(node: TestSidecar): Promise<MercureStream> {
    const token = await clusterToken([detail(['subscribe'], [urlpattern(`${SUBS}/*`)])]);
    return subscribe(
      node,
      [
        ['match_urlpattern', `${SUBS}/:type/:match/:subscriber`],
        ['match', 'marker'],
      ],
      { authorization: `Bearer ${token}` },
    );
  }

  /** The subscription events of `match` a stream received, in order. */
  function events(st: SseStream, match: string): SubscriptionDoc[] {
    return st.frames
      .filter((f) => f.event === 'mercure')
      .map((f) => JSON.parse(f.data ?? '{}') as SubscriptionDoc)
      .filter((d) => d.match === match);
  }

  function isEvent(match: string, active: boolean): (f: Frame) => boolean {
    return (f) => {
      if (f.event !== 'mercure') return false;
      const d = JSON.parse(f.data ?? '{}') as SubscriptionDoc;
      return d.match === match && d.active === active;
    };
  }

  /** The subscriptions `node`'s API lists. */
  async function listed(node: { url: string }): Promise<SubscriptionDoc[]> {
    const token = await clusterToken([detail(['subscribe'], [urlpattern(`${SUBS}{/*}?`)])]);
    const res = await get(node, SUBS, { authorization: `Bearer ${token}` });
    if (res.status !== 200) throw new Error(`${SUBS} answered ${res.status}: ${res.body}`);
    return (JSON.parse(res.body) as { subscriptions: SubscriptionDoc[] }).subscriptions;
  }

  async function lists(node: { url: string }, match: string): Promise<boolean> {
    return (await listed(node)).some((d) => d.match === match);
  }

  it('a node started after a subscription was opened on another lists it in the API', async () => {
    const prefix = `msubs${++clusters}:`;
    const first = await subsNode(prefix, 'msubs-early');
    const topic = 'https://example.com/books/opened-early';
    await subscribe(first, { match: topic });
    await eventually(() => lists(first, topic), 5000, 'the first node to list it');

    // It never saw the subscription event: it learns the subscription from Redis.
    const late = await subsNode(prefix, 'msubs-late');
    await eventually(() => lists(late, topic), 5000, 'the late node to list it');
    const onFirst = (await listed(first)).find((d) => d.match === topic);
    expect((await listed(late)).filter((d) => d.match === topic)).toEqual([onFirst]);
  });

  it('a node killed without a goodbye has its subscriptions ended by a live one: gone from the API, active:false delivered', async () => {
    const prefix = `msubs${++clusters}:`;
    const survivor = await subsNode(prefix, 'msubs-survivor');
    const watcher = await observer(survivor);
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(subsSettings(prefix))) {
      env[`ASKR_${key.replace('.', '_').toUpperCase()}`] = value;
    }
    const doomed = await startChildNode(redisServer(), 'msubs-doomed', env, {
      push: (n) => cleanups.push(() => n.kill()),
    });
    const topic = 'https://example.com/books/on-a-dead-node';
    const st = await openStream(`${doomed.url}${HUB_PATH}?match=${encodeURIComponent(topic)}`);
    streams.push(st);
    expect(st.status).toBe(200);
    const started = JSON.parse((await watcher.waitFor(isEvent(topic, true))).data ?? '{}') as {
      id: string;
    };
    await eventually(() => lists(survivor, topic), 5000, 'the survivor to list it');

    // SIGKILL, like an OOM-killed pod: no stream close, no end event from the node itself.
    await doomed.kill();
    const ended = await watcher.waitFor(isEvent(topic, false), 10_000);
    expect(JSON.parse(ended.data ?? '{}')).toEqual({ ...started, active: false });
    await eventually(async () => !(await lists(survivor, topic)), 5000, 'the survivor to drop it');
    // A marker published after: an end announced twice would have come before it.
    await mercurePublish(survivor, { topic: 'marker', data: 'after the sweep' });
    await watcher.update('after the sweep');
    expect(events(watcher, topic).map((d) => d.active)).toEqual([true, false]);
  });

  it('a subscription closed normally is announced ended once, on every node', async () => {
    const prefix = `msubs${++clusters}:`;
    const nodeA = await subsNode(prefix, 'msubs-a');
    const nodeB = await subsNode(prefix, 'msubs-b');
    const watchers = [await observer(nodeA), await observer(nodeB)];
    const topic = 'https://example.com/books/closed-normally';
    const st = await subscribe(nodeB, { match: topic });
    for (const w of watchers) await w.waitFor(isEvent(topic, true));
    await eventually(() => lists(nodeA, topic), 5000, 'node A to list it');

    st.close();
    for (const w of watchers) await w.waitFor(isEvent(topic, false));
    // Markers published on both nodes after the end: a second end would have come before them.
    await mercurePublish(nodeB, { topic: 'marker', data: 'marker from B' });
    await mercurePublish(nodeA, { topic: 'marker', data: 'marker from A' });
    for (const w of watchers) {
      await w.update('marker from B');
      await w.update('marker from A');
      expect(events(w, topic).map((d) => d.active)).toEqual([true, false]);
    }
    for (const node of [nodeA, nodeB]) expect(await lists(node, topic)).toBe(false);
  });

  it('after a Redis outage (restarted empty) every node lists the whole cluster again, also what opened meanwhile', async () => {
    const server = await startRedis();
    cleanups.push(() => server.stop());
    const prefix = `msubs${++clusters}:`;
    const nodeA = await subsNode(prefix, 'msubs-outage-a', server);
    const nodeB = await subsNode(prefix, 'msubs-outage-b', server);
    const before = 'https://example.com/books/before-the-outage';
    const during = 'https://example.com/books/during-the-outage';
    await subscribe(nodeA, { match: before });
    await eventually(() => lists(nodeB, before), 5000, 'node B to list it');

    await server.kill();
    const lost = 'cluster: lost Redis; delivering on this node only until it is back';
    await until(
      () => [nodeA, nodeB].every((n) => n.logs.some((l) => l['msg'] === lost)),
      10_000,
      'both nodes to see Redis gone',
    );
    // Opened while Redis is away: listed by its own node only, and nothing throws.
    await subscribe(nodeB, { match: during });
    expect(await lists(nodeB, during)).toBe(true);
    expect(await lists(nodeA, during)).toBe(false);

    await server.restart();
    for (const node of [nodeA, nodeB]) {
      await eventually(
        async () => (await lists(node, before)) && (await lists(node, during)),
        15_000,
        'both subscriptions listed again',
      );
    }
  });
});
