/**
 * Presence across sidecars on one real Redis: two users on two nodes see each other (the case
 * Reverb gets wrong), a user with tabs on two nodes is one member (one join, one leave for the
 * whole cluster), and a node that dies has its members removed by the others within
 * cluster.presence_ttl. A regression looks like: a member list that only shows the node's own
 * users, a second join for a second tab on another node, or a dead node's users present forever.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startChildNode, type ChildNode } from './helpers/cluster.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function redis(): Promise<TestRedis> {
  const r = await startRedis();
  cleanups.push(() => r.stop());
  return r;
}

async function node(r: TestRedis, id: string, ttl = '30s'): Promise<TestSidecar> {
  const s = await startTestSidecar({
    'cluster.redis_url': r.url,
    'cluster.node_id': id,
    'cluster.presence_ttl': ttl,
  });
  cleanups.push(() => s.close());
  return s;
}

/** A sidecar in its own process (so the test can SIGKILL it like a crashed pod). */
function childNode(r: TestRedis, id: string, ttl: string): Promise<ChildNode> {
  return startChildNode(
    r,
    id,
    { ASKR_CLUSTER_PRESENCE_TTL: ttl },
    {
      push: (n: ChildNode) => cleanups.push(() => n.kill()),
    },
  );
}

async function join(s: { url: string }, user: number): Promise<SseStream> {
  const stream = await openStream(`${s.url}/askr/events?channel=presence-room.7`, {
    cookie: `user=${user}`,
  });
  cleanups.push(() => stream.close());
  return stream;
}

function members(frameData: string | undefined): number[] {
  const doc = JSON.parse(frameData ?? '{}') as { members: Array<{ user_id: number }> };
  return doc.members.map((m) => m.user_id).sort();
}

describe('presence across sidecars', () => {
  it('two users on two nodes see each other: member list, join and leave', async () => {
    const r = await redis();
    const a = await node(r, 'node-a');
    const b = await node(r, 'node-b');
    const alice = await join(a, 1);
    expect(members((await alice.waitFor((f) => f.event === 'askr:presence.members')).data)).toEqual(
      [1],
    );
    const bob = await join(b, 2);
    // Bob, on the other node, gets Alice in his first list.
    expect(members((await bob.waitFor((f) => f.event === 'askr:presence.members')).data)).toEqual([
      1, 2,
    ]);
    const joined = await alice.waitFor((f) => f.event === 'askr:presence.join');
    expect(JSON.parse(joined.data ?? '')).toMatchObject({ member: { user_id: 2 } });
    bob.close();
    const left = await alice.waitFor((f) => f.event === 'askr:presence.leave');
    expect(JSON.parse(left.data ?? '')).toMatchObject({ member: { user_id: 2 } });
    // Alice never hears her own join.
    expect(
      alice.frames.filter(
        (f) => f.event === 'askr:presence.join' && (f.data ?? '').includes('"user_id":1'),
      ),
    ).toHaveLength(0);
  });

  it('a user with tabs on two nodes is one member: one join, and a leave only after the last tab', async () => {
    const r = await redis();
    const a = await node(r, 'node-a');
    const b = await node(r, 'node-b');
    const watcher = await join(a, 9);
    await watcher.waitFor((f) => f.event === 'askr:presence.members');
    const tab1 = await join(a, 3);
    await tab1.waitFor((f) => f.event === 'askr:presence.members');
    await watcher.waitFor((f) => f.event === 'askr:presence.join');
    const tab2 = await join(b, 3);
    expect(members((await tab2.waitFor((f) => f.event === 'askr:presence.members')).data)).toEqual([
      3, 9,
    ]);
    tab1.close();
    // Closing the node-a tab announces nothing: the user is still there on node-b. A marker
    // join published after the close proves the watcher got everything sent before it.
    const marker = await openStream(`${b.url}/askr/events?channel=presence-room.7`, {
      cookie: 'user=4',
    });
    cleanups.push(() => marker.close());
    await watcher.waitFor(
      (f) => f.event === 'askr:presence.join' && (f.data ?? '').includes('"user_id":4'),
    );
    const forUser3 = (event: string): number =>
      watcher.frames.filter((f) => f.event === event && (f.data ?? '').includes('"user_id":3'))
        .length;
    expect(forUser3('askr:presence.join')).toBe(1);
    expect(forUser3('askr:presence.leave')).toBe(0);
    tab2.close();
    await watcher.waitFor(
      (f) => f.event === 'askr:presence.leave' && (f.data ?? '').includes('"user_id":3'),
    );
    expect(forUser3('askr:presence.leave')).toBe(1);
  });

  it('a node stopped gracefully announces its members leaving at once (not after presence_ttl)', async () => {
    const r = await redis();
    const a = await node(r, 'node-a', '60s');
    const b = await node(r, 'node-b', '60s');
    const alice = await join(a, 1);
    await alice.waitFor((f) => f.event === 'askr:presence.members');
    await join(b, 2);
    await alice.waitFor((f) => f.event === 'askr:presence.join');
    await b.close();
    // Within the default 5 s wait, far below the 60 s liveness: the stop itself said goodbye.
    const left = await alice.waitFor((f) => f.event === 'askr:presence.leave');
    expect(JSON.parse(left.data ?? '')).toMatchObject({ member: { user_id: 2 } });
  });

  it("a dead node's members are removed by the others within presence_ttl", async () => {
    const r = await redis();
    const a = await node(r, 'node-a', '1s');
    const b = await childNode(r, 'node-b', '1s');
    const alice = await join(a, 1);
    await alice.waitFor((f) => f.event === 'askr:presence.members');
    const bob = await join(b, 2);
    await alice.waitFor((f) => f.event === 'askr:presence.join');
    // Node b dies without a goodbye (SIGKILL, like an OOM-killed pod): Redis still lists bob
    // until node a notices that b stopped refreshing its liveness.
    await b.kill();
    bob.close();
    const left = await alice.waitFor(
      (f) => f.event === 'askr:presence.leave' && (f.data ?? '').includes('"user_id":2'),
      10_000,
    );
    expect(JSON.parse(left.data ?? '')).toMatchObject({ member: { user_id: 2 } });
    const late = await join(a, 5);
    expect(members((await late.waitFor((f) => f.event === 'askr:presence.members')).data)).toEqual([
      1, 5,
    ]);
  });
});
