/**
 * A Mercure resume on a sidecar that joined the cluster after the event it resumes from: node A
 * takes publishes while node B does not exist yet; B starts, and a subscriber resuming on B from
 * an id A answered gets every later update from the shared history in Redis, with that id as
 * Mercure-Last-Event-ID. A regression looks like: `earliest` and an askr:lost frame (B used only
 * what it saw itself), or updates missing or repeated.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode } from './helpers/cluster.ts';
import {
  HUB_PATH,
  MERCURE_BASE,
  datas,
  detail,
  hubToken,
  publish,
  subscribe,
  type Fields,
  type MercureStream,
} from './helpers/mercure.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import { runCleanups, type Cleanups } from './helpers/wait.ts';

const AUDIENCE = `https://hub.example${HUB_PATH}`;
let redis: TestRedis | undefined;
let dir = '';
const cleanups: Cleanups = [];

beforeAll(async () => {
  dir = await phpTempDir('askr-mercure-resume-');
  redis = await startRedis();
});
afterAll(async () => {
  await runCleanups(cleanups);
  await redis?.stop();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

async function node(name: string): Promise<TestSidecar> {
  if (redis === undefined) throw new Error('redis did not start');
  const settings: Record<string, string> = { 'mercure.audience': AUDIENCE };
  for (const [key, value] of Object.entries(MERCURE_BASE)) {
    settings[key] = Array.isArray(value) ? value.join(',') : String(value);
  }
  const s = await startNode(redis, dir, name, { token: 'resume-token', settings });
  cleanups.push(() => s.close());
  return s;
}

async function mercurePublish(s: TestSidecar, fields: Fields): Promise<string> {
  const token = await hubToken(s, [detail(['publish'], ['*'])], { aud: AUDIENCE });
  const res = await publish(s, fields, { token });
  if (res.status !== 200) throw new Error(`publish answered ${res.status}: ${res.body}`);
  return res.body;
}

describe('Mercure resume on a node that joined later', () => {
  it('replays from the shared history what the new node never saw, with the requested id as anchor', async () => {
    const a = await node('resume-a');
    const topic = 'https://example.com/orders/7';
    await mercurePublish(a, { topic, data: 'seen' });
    const from = await mercurePublish(a, { topic, data: 'last seen' });
    await mercurePublish(a, { topic, data: 'missed 1' });
    await mercurePublish(a, { topic: 'https://example.com/other', data: 'other topic' });
    await mercurePublish(a, { topic, data: 'missed 2', private: 'on' });
    await mercurePublish(a, { topic, data: 'missed 3' });
    const b = await node('resume-b');
    const st: MercureStream = await subscribe(
      b,
      { match: topic },
      { headers: { 'last-event-id': from } },
    );
    cleanups.push(() => {
      st.close();
    });
    expect(st.status).toBe(200);
    expect(st.headers['mercure-last-event-id']).toBe(from);
    await mercurePublish(a, { topic, data: 'live' });
    await st.update('live');
    // The private one needs a grant this anonymous subscriber does not have.
    expect(datas(st)).toEqual(['missed 1', 'missed 3', 'live']);
    expect(st.frames.some((f) => f.event === 'askr:lost')).toBe(false);
  });
});
