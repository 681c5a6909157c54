/**
 * Whispers (client events, issue 12) end to end: POST /askr/whisper with a grant relays
 * `client-<name>` to the other streams of a private/presence channel and never to the sender's
 * own stream (its socket id, from the grant, is excluded), without asking PHP. Refusals: no
 * grant or a bad one 401, a public channel or one the grant does not cover 403, more than
 * sse.whisper_rate per second 429 with Retry-After, a body over sse.whisper_max_size 413.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type SseStream } from './helpers/sse-client.ts';
import {
  authCounter,
  GRANTS_APP,
  postAuth,
  postWhisper,
  type AuthAnswer,
  type AuthCounter,
} from './helpers/grant-client.ts';

let s: TestSidecar;
let counter: AuthCounter;
beforeAll(async () => {
  s = await startTestSidecar({
    ...GRANTS_APP,
    'sse.grant_secret': 'test-whisper-secret-0123456789abcdef',
    'sse.whisper_rate': '3',
    'sse.whisper_max_size': '1KiB',
  });
  counter = authCounter(s.url);
});
afterAll(async () => {
  await s.close();
});

interface Member {
  auth: AuthAnswer['json'];
  stream: SseStream;
}

/** A page of `user` on `channels`: its grant and its stream (opened with the grant). */
async function member(user: number, channels: string[]): Promise<Member> {
  const answer = await postAuth(s.url, { channels }, { cookie: `user=${user}` });
  expect(answer.status).toBe(200);
  const query = channels.map((c) => `channel=${encodeURIComponent(c)}`).join('&');
  const stream = await openStream(
    `${s.url}/askr/events?${query}&grant=${encodeURIComponent(answer.json.grant)}`,
  );
  expect(stream.status).toBe(200);
  await stream.waitFor((f) => f.event === 'askr:connected');
  return { auth: answer.json, stream };
}

describe('POST /askr/whisper', () => {
  it('reaches the other streams of the channel, not the sender, and asks PHP nothing', async () => {
    const alice = await member(1, ['private-chat.1']);
    const bob = await member(2, ['private-chat.1']);
    const carol = await member(3, ['private-chat.1']);
    // An event before the whisper: the resumes below start after it.
    s.hub.publish({ channels: ['private-chat.1'], data: Buffer.from('m0'), ingress: 'internal' });
    const m0 = await alice.stream.waitFor((f) => f.data === 'm0');
    const before = await counter.count();
    const sent = await postWhisper(
      s.url,
      { channel: 'private-chat.1', event: 'typing', data: { name: 'alice', typing: true } },
      { 'x-askr-grant': alice.auth.grant, cookie: counter.cookie },
    );
    expect(sent.status).toBe(202);
    expect(JSON.parse(sent.text)).toEqual({ delivered: 2 });
    for (const other of [bob, carol]) {
      const f = await other.stream.waitFor((x) => x.event === 'client-typing');
      expect(JSON.parse(f.data ?? '')).toEqual({ name: 'alice', typing: true });
      expect(f.id).toMatch(/@private-chat\.1$/);
    }
    // A marker published after the whisper reaches alice too: by then she would have had it.
    s.hub.publish({
      channels: ['private-chat.1'],
      data: Buffer.from('marker'),
      ingress: 'internal',
    });
    await alice.stream.waitFor((f) => f.data === 'marker');
    expect(alice.stream.frames.some((f) => f.event === 'client-typing')).toBe(false);
    // Nor does her reconnect replay it to her; bob's does.
    for (const m of [alice, bob]) m.stream.close();
    const replayAlice = await openStream(
      `${s.url}/askr/events?channel=private-chat.1&grant=${encodeURIComponent(alice.auth.grant)}`,
      { 'last-event-id': m0.id ?? '' },
    );
    await replayAlice.waitFor((f) => f.data === 'marker');
    expect(replayAlice.frames.some((f) => f.event === 'client-typing')).toBe(false);
    replayAlice.close();
    const replayBob = await openStream(
      `${s.url}/askr/events?channel=private-chat.1&grant=${encodeURIComponent(bob.auth.grant)}`,
      { 'last-event-id': m0.id ?? '' },
    );
    await replayBob.waitFor((f) => f.event === 'client-typing');
    replayBob.close();
    carol.stream.close();
    expect((await counter.count()) - before).toBe(0);
  });

  it('works with the askr_grant cookie, on a presence channel, and keeps a client- prefix', async () => {
    const alice = await member(1, ['presence-room.9']);
    const bob = await member(2, ['presence-room.9']);
    const sent = await postWhisper(
      s.url,
      {
        channel: 'presence-room.9',
        event: 'client-wave',
        data: 'hi',
        socket_id: alice.auth.socket_id,
      },
      { cookie: `askr_grant=${alice.auth.grant}` },
    );
    expect(sent.status).toBe(202);
    const f = await bob.stream.waitFor((x) => x.event === 'client-wave');
    expect(JSON.parse(f.data ?? '')).toBe('hi');
    alice.stream.close();
    bob.stream.close();
  });

  it('refuses: no grant 401, a bad grant 401, a public channel 403, an uncovered channel 403, another socket id 403', async () => {
    const { json } = await postAuth(
      s.url,
      { channels: ['private-chat.2', 'news'] },
      { cookie: 'user=1' },
    );
    const cases: Array<[unknown, Record<string, string>, number, RegExp]> = [
      [{ channel: 'private-chat.2', event: 'x' }, {}, 401, /a grant is required/],
      [
        { channel: 'private-chat.2', event: 'x' },
        { 'x-askr-grant': `${json.grant}x` },
        401,
        /grant expired or invalid: fetch a new one from \/askr\/auth/,
      ],
      [
        { channel: 'news', event: 'x' },
        { 'x-askr-grant': json.grant },
        403,
        /private- and presence- channels only/,
      ],
      [
        { channel: 'private-chat.3', event: 'x' },
        { 'x-askr-grant': json.grant },
        403,
        /the grant does not cover channel "private-chat.3"/,
      ],
      [
        { channel: 'private-chat.2', event: 'x', socket_id: '1.1' },
        { 'x-askr-grant': json.grant },
        403,
        /not the socket id of the grant/,
      ],
      [{ channel: 'private-chat.2' }, { 'x-askr-grant': json.grant }, 400, /"event" must be/],
      [
        { channel: 'bad name', event: 'x' },
        { 'x-askr-grant': json.grant },
        400,
        /character outside/,
      ],
      [
        { channel: 'private-chat.2', event: 'a\nb' },
        { 'x-askr-grant': json.grant },
        400,
        /without control characters/,
      ],
    ];
    for (const [body, headers, status, message] of cases) {
      const answer = await postWhisper(s.url, body, headers);
      expect({ body, status: answer.status }).toEqual({ body, status });
      expect(answer.text).toMatch(message);
    }
  });

  it('429 with Retry-After past sse.whisper_rate per socket id; 413 past sse.whisper_max_size', async () => {
    const { json } = await postAuth(s.url, { channels: ['private-chat.4'] }, { cookie: 'user=1' });
    const whisper = () =>
      postWhisper(
        s.url,
        { channel: 'private-chat.4', event: 'n', data: 1 },
        { 'x-askr-grant': json.grant },
      );
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await whisper()).status);
    expect(statuses.slice(0, 3)).toEqual([202, 202, 202]);
    const limited = await whisper();
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.text).toContain('sse.whisper_rate');
    // Another socket id has its own budget.
    const other = await postAuth(s.url, { channels: ['private-chat.4'] }, { cookie: 'user=2' });
    const fresh = await postWhisper(
      s.url,
      { channel: 'private-chat.4', event: 'n', data: 1 },
      { 'x-askr-grant': other.json.grant },
    );
    expect(fresh.status).toBe(202);
    const big = await postWhisper(
      s.url,
      { channel: 'private-chat.4', event: 'n', data: 'x'.repeat(2048) },
      { 'x-askr-grant': other.json.grant },
    );
    expect(big.status).toBe(413);
    expect(big.text).toContain('sse.whisper_max_size');
  });
});
