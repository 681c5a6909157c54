/**
 * Presence channels (members named by the app's auth response, join/leave, member list) and
 * sse.state_file (history, epoch and ids survive a graceful restart, so Last-Event-ID resumes
 * with no askr:lost). Real sidecar, real php-fpm, real SSE clients.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { connectedSocketId, dataFrames, openStream } from './helpers/sse-client.ts';

const TOKEN = 'presence-token';
let s: TestSidecar;
beforeAll(async () => {
  s = await startTestSidecar({ 'sse.publish_token': TOKEN });
});
afterAll(async () => {
  await s.close();
});

async function publish(base: TestSidecar, channel: string, data: string): Promise<void> {
  const res = await request(`${base.url}/askr/publish?channel=${channel}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
    body: data,
  });
  expect(res.statusCode).toBe(202);
  await res.body.text();
}

describe('presence channels', () => {
  it('delivers the member list, joins and leaves (ref-counted per user)', async () => {
    const url = `${s.url}/askr/events?channel=presence-room.1`;
    const alice = await openStream(url, { cookie: 'user=1' });
    const first = await alice.waitFor((f) => f.event === 'askr:presence.members');
    expect(JSON.parse(first.data ?? '')).toEqual({
      channel: 'presence-room.1',
      members: [{ user_id: 1, user_info: { name: 'user 1' } }],
    });

    const bob = await openStream(url, { cookie: 'user=2' });
    const list = await bob.waitFor((f) => f.event === 'askr:presence.members');
    expect((JSON.parse(list.data ?? '') as { members: unknown[] }).members).toHaveLength(2);
    const join = await alice.waitFor((f) => f.event === 'askr:presence.join');
    expect(JSON.parse(join.data ?? '')).toMatchObject({ member: { user_id: 2 } });

    // A second tab of bob: no second join; closing one tab: no leave.
    const bobTab2 = await openStream(url, { cookie: 'user=2' });
    await bobTab2.waitFor((f) => f.event === 'askr:presence.members');
    bobTab2.close();
    bob.close();
    const leave = await alice.waitFor((f) => f.event === 'askr:presence.leave');
    expect(JSON.parse(leave.data ?? '')).toMatchObject({ member: { user_id: 2 } });
    expect(alice.frames.filter((f) => f.event === 'askr:presence.join')).toHaveLength(1);
    expect(alice.frames.filter((f) => f.event === 'askr:presence.leave')).toHaveLength(1);
    alice.close();
  });

  it('a guest is refused a presence channel', async () => {
    const res = await request(`${s.url}/askr/events?channel=presence-room.1`);
    expect(res.statusCode).toBe(403);
    await res.body.text();
  });
});

describe('sse.state_file', () => {
  it('a client resumes with Last-Event-ID across a graceful restart, with no askr:lost', async () => {
    const stateFile = join(await mkdtemp(join(tmpdir(), 'askr-state-')), 'state.json');
    const first = await startTestSidecar({
      'sse.publish_token': TOKEN,
      'sse.state_file': stateFile,
    });
    const port = first.port;
    const st = await openStream(`${first.url}/askr/events?channel=resume`);
    await publish(first, 'resume', 'before-1');
    const seen = await st.waitFor((f) => f.data === 'before-1');
    st.close();
    await publish(first, 'resume', 'missed-while-away');
    await first.close();

    const second = await startTestSidecar({
      'sse.publish_token': TOKEN,
      'sse.state_file': stateFile,
      'server.listen': `127.0.0.1:${port}`,
    });
    try {
      await publish(second, 'resume', 'after-restart');
      const again = await openStream(`${second.url}/askr/events?channel=resume`, {
        'last-event-id': seen.id ?? '',
      });
      await again.waitFor((f) => f.data === 'after-restart');
      // askr:connected opens the resumed stream, then the missed event and the live one.
      expect(connectedSocketId(again.frames)).toMatch(/^\d+\.\d+$/);
      expect(dataFrames(again.frames).map((f) => f.data)).toEqual([
        'missed-while-away',
        'after-restart',
      ]);
      expect(again.frames.some((f) => f.event === 'askr:lost')).toBe(false);
      expect(seen.id?.split('-')[0]).toBe(again.frames.at(-1)?.id?.split('-')[0]); // same epoch
      again.close();
    } finally {
      await second.close();
    }
  });
});

describe('drain', () => {
  it('on shutdown every held stream gets a retry: hint, then ends', async () => {
    const drained = await startTestSidecar({ 'sse.retry': '1500ms' });
    const a = await openStream(`${drained.url}/askr/events?channel=drain`);
    const b = await openStream(`${drained.url}/hold?channels=drain`);
    await a.frame(0);
    await b.waitFor((f) => f.event === 'init');
    const closing = drained.close();
    await Promise.all([a.ended, b.ended]);
    await closing;
    // One retry: on connect, one more as the drain hint (after PHP's frame for the hold).
    for (const st of [a, b]) {
      expect(st.frames.filter((f) => f.retry === 1500)).toHaveLength(2);
      expect(st.frames.at(-1)?.retry).toBe(1500);
    }
    expect(b.frames.at(-2)?.event).toBe('init');
  });
});
