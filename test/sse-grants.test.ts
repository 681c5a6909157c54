/**
 * Subscription grants end to end (issue 12), on a real sidecar and php-fpm with the fixture's
 * counting auth route (fixtures-php/app/public/sse-grants-app.php):
 * - POST /askr/auth authorizes a batch with any guard (session cookie, bearer token): allowed,
 *   refused and presence channels each get their verdict; a refused one never fails the others.
 * - Regression "no PHP on reconnect": a stream reconnecting with its grant (and Last-Event-ID)
 *   costs zero FPM requests, counted by the app itself; a recurrence shows the counter moving on
 *   every reconnect (a deploy's reconnect storm would take every FPM worker).
 * - Expired, forged and tampered grants are 401; a grant for channel A never opens channel B.
 * - The batch answers a bad name or one channel too many per channel; only a malformed body is a
 *   400 (a recurrence: a page whose tabs want one channel too many loses all of them).
 * - X-Askr-Grant beats `grant=`, which beats the cookie; an unused cookie grant never overrides
 *   the `socket_id` parameter (a recurrence: toOthers() from one tab skips another tab's stream).
 * - Regression "no event yet, event missed on reopen": askr:connected carries the hub's position,
 *   and a stream reopened from it gets what was published in between (a recurrence: a page that
 *   had received nothing misses the event published while it added a channel).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { signGrant } from '../src/sse/grants.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { dataFrames, openStream, type Frame } from './helpers/sse-client.ts';
import {
  authCounter,
  grantPayload,
  GRANTS_APP,
  postAuth,
  type AuthCounter,
} from './helpers/grant-client.ts';
import { until } from './helpers/wait.ts';

const SECRET = 'test-grant-secret-0123456789abcdef';

let s: TestSidecar;
let counter: AuthCounter;
beforeAll(async () => {
  s = await startTestSidecar({
    ...GRANTS_APP,
    'sse.grant_secret': SECRET,
    'sse.grant_ttl': '1m',
    'sse.max_channels_per_connection': '6',
  });
  counter = authCounter(s.url);
});
afterAll(async () => {
  await s.close();
});

const events = (query: string): string => `${s.url}/askr/events?${query}`;
const connectedOf = (
  f: Frame,
): { socket_id: string; grant_expires_at: number | null; position: string } =>
  JSON.parse(f.data ?? '{}') as never;
/** The position of askr:connected: `<epoch>-<seq>`, no channel. */
const POSITION = expect.stringMatching(/^[A-Za-z0-9_.-]+-\d+$/) as string;

describe('POST /askr/auth', () => {
  it('answers a verdict per channel: allowed, refused (403), presence with its member, bad presence (502)', async () => {
    const before = await counter.count();
    const startedAt = Date.now();
    const answer = await postAuth(
      s.url,
      {
        channels: [
          'private-user.42',
          'private-user.7',
          'presence-room.1',
          'news',
          'presence-broken.1',
        ],
        socket_id: '111.222',
      },
      { cookie: `user=42; ${counter.cookie}` },
    );
    expect(answer.status).toBe(200);
    const { json } = answer;
    expect(json.socket_id).toBe('111.222');
    expect(json.channels).toEqual({
      'private-user.42': { allowed: true },
      'private-user.7': {
        allowed: false,
        status: 403,
        reason: 'not authorized for channel "private-user.7" (the app answered 403)',
      },
      'presence-room.1': { allowed: true, member: { user_id: 42, user_info: { name: 'user 42' } } },
      news: { allowed: true },
      'presence-broken.1': {
        allowed: false,
        status: 502,
        reason: expect.stringMatching(/cannot join presence channel "presence-broken.1"/) as string,
      },
    });
    expect(json.expires_at).toBeGreaterThanOrEqual(startedAt + 60_000);
    expect(json.expires_at).toBeLessThanOrEqual(Date.now() + 60_000);
    // The grant covers the allowed private/presence channels only, with the presence member.
    expect(grantPayload(json.grant)).toEqual({
      v: 1,
      c: ['private-user.42', 'presence-room.1'],
      m: { 'presence-room.1': { user_id: 42, user_info: { name: 'user 42' } } },
      s: '111.222',
      exp: json.expires_at,
    });
    expect(answer.setCookie).toBe(
      `askr_grant=${json.grant}; Path=/askr/; Max-Age=60; HttpOnly; SameSite=Lax`,
    );
    // One auth request per private/presence channel; none for "news".
    expect((await counter.count()) - before).toBe(4);
  });

  it('a token guard: the Authorization header reaches the app, and a socket id is made when none is given', async () => {
    const answer = await postAuth(
      s.url,
      { channels: ['private-user.5', 'private-user.6'] },
      { authorization: 'Bearer token-5' },
    );
    expect(answer.status).toBe(200);
    expect(answer.json.channels['private-user.5']).toEqual({ allowed: true });
    expect(answer.json.channels['private-user.6']).toMatchObject({ allowed: false, status: 403 });
    expect(answer.json.socket_id).toMatch(/^\d+\.\d+$/);
    expect(grantPayload(answer.json.grant).s).toBe(answer.json.socket_id);
    const guest = await postAuth(s.url, { channels: ['private-user.5'] });
    expect(guest.json.channels['private-user.5']).toMatchObject({ allowed: false, status: 403 });
    expect(grantPayload(guest.json.grant).c).toEqual([]);
  });

  it('a bad name, a name too long and channels past the limit are refused one by one (400), the others answered', async () => {
    const before = await counter.count();
    const long = `private-${'x'.repeat(121)}`; // 129 bytes: over sse.max_channel_name_length
    const answer = await postAuth(
      s.url,
      {
        channels: [
          'bad name',
          'private-user.42',
          long,
          'news',
          'private-user.7',
          'a',
          'b',
          'c',
          'private-user.42', // a duplicate counts once
          'private-d',
          'e',
        ],
      },
      { cookie: `user=42; ${counter.cookie}` },
    );
    expect(answer.status).toBe(200);
    const limit = {
      allowed: false,
      status: 400,
      reason: 'over the limit of 6 channels per stream (sse.max_channels_per_connection)',
    };
    expect(answer.json.channels).toEqual({
      'bad name': {
        allowed: false,
        status: 400,
        reason: 'channel name "bad name" has a character outside A-Z a-z 0-9 _ - = @ , . ;',
      },
      'private-user.42': { allowed: true },
      [long]: {
        allowed: false,
        status: 400,
        reason: 'channel name is 129 bytes; the limit is 128 (sse.max_channel_name_length)',
      },
      news: { allowed: true },
      'private-user.7': {
        allowed: false,
        status: 403,
        reason: 'not authorized for channel "private-user.7" (the app answered 403)',
      },
      a: { allowed: true },
      b: { allowed: true },
      c: { allowed: true },
      // The first six valid names are kept; the others are refused without asking the app.
      'private-d': limit,
      e: limit,
    });
    expect(Object.keys(answer.json.channels)[0]).toBe('bad name'); // the request's order
    expect(grantPayload(answer.json.grant).c).toEqual(['private-user.42']);
    expect((await counter.count()) - before).toBe(2);
  });

  it.each([
    ['not JSON', '{oops', 400, /not valid JSON/],
    ['an array', '[]', 400, /must be a JSON object/],
    ['no channels', {}, 400, /"channels" must be an array/],
    ['a channel that is not a string', { channels: [1] }, 400, /"channels" must be an array/],
    ['channels as a string', { channels: 'a' }, 400, /"channels" must be an array/],
    ['an empty list', { channels: [] }, 400, /no channel given: list them in "channels"/],
    [
      'a list past four times the per-stream limit',
      { channels: Array.from({ length: 25 }, (_, i) => `c${i}`) },
      400,
      /25 channels asked; at most 24 per request \(4 × sse.max_channels_per_connection\)/,
    ],
    [
      'a bad socket id',
      { channels: ['a'], socket_id: '1.2; x' },
      400,
      /"socket_id" must look like/,
    ],
  ])('%s is a 400 with a precise message', async (_name, body, status, message) => {
    const answer = await postAuth(s.url, body);
    expect(answer.status).toBe(status);
    expect(answer.text).toMatch(message);
  });

  it('needs POST and a JSON content type (a cross-site form cannot post it)', async () => {
    const get = await request(`${s.url}/askr/auth`);
    expect(get.statusCode).toBe(405);
    await get.body.text();
    const form = await postAuth(s.url, 'channels=a', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form.status).toBe(415);
  });
});

describe('the events endpoint with a grant', () => {
  it('a grant opens its channels without PHP; reconnects with Last-Event-ID cost zero FPM requests', async () => {
    const { json } = await postAuth(
      s.url,
      { channels: ['private-user.42', 'presence-room.2'] },
      { cookie: `user=42; ${counter.cookie}` },
    );
    const url = events(
      `channel=private-user.42&channel=presence-room.2&grant=${encodeURIComponent(json.grant)}`,
    );
    const before = await counter.count();
    // The counter cookie goes with every stream request: any PHP request would be counted.
    const first = await openStream(url, { cookie: counter.cookie });
    expect(first.status).toBe(200);
    const connected = await first.waitFor((f) => f.event === 'askr:connected');
    expect(connectedOf(connected)).toEqual({
      socket_id: json.socket_id,
      grant_expires_at: json.expires_at,
      position: POSITION,
    });
    await until(() => s.hub.stats().connections >= 1);
    s.hub.publish({ channels: ['private-user.42'], data: Buffer.from('e0'), ingress: 'internal' });
    const seen = await first.waitFor((f) => f.data === 'e0');
    first.close();
    await until(() => s.hub.stats().connections === 0);
    for (let i = 1; i <= 5; i++) {
      s.hub.publish({
        channels: ['private-user.42'],
        data: Buffer.from(`e${i}`),
        ingress: 'internal',
      });
    }
    // A reconnect storm: ten reconnects, each resuming from the same id.
    for (let round = 0; round < 10; round++) {
      const again = await openStream(url, {
        cookie: counter.cookie,
        'last-event-id': seen.id ?? '',
      });
      expect(again.status).toBe(200);
      await again.waitFor((f) => f.data === 'e5');
      expect(
        again.frames.filter((f) => f.data?.startsWith('e') === true).map((f) => f.data),
      ).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
      again.close();
    }
    expect((await counter.count()) - before).toBe(0);
  });

  it('presence: the member comes from the grant, the others hear the join, PHP is not asked', async () => {
    const alice = await postAuth(s.url, { channels: ['presence-room.3'] }, { cookie: 'user=1' });
    const bob = await postAuth(s.url, { channels: ['presence-room.3'] }, { cookie: 'user=2' });
    const open = (grant: string) =>
      openStream(events(`channel=presence-room.3&grant=${encodeURIComponent(grant)}`), {
        cookie: counter.cookie,
      });
    const before = await counter.count();
    const a = await open(alice.json.grant);
    const members = await a.waitFor((f) => f.event === 'askr:presence.members');
    expect(JSON.parse(members.data ?? '{}')).toMatchObject({
      channel: 'presence-room.3',
      members: [{ user_id: 1, user_info: { name: 'user 1' } }],
    });
    const b = await open(bob.json.grant);
    const join = await a.waitFor((f) => f.event === 'askr:presence.join');
    expect(JSON.parse(join.data ?? '{}')).toEqual({
      channel: 'presence-room.3',
      member: { user_id: 2, user_info: { name: 'user 2' } },
    });
    b.close();
    await a.waitFor((f) => f.event === 'askr:presence.leave');
    a.close();
    expect((await counter.count()) - before).toBe(0);
  });

  it('a grant for channel A does not open channel B: B goes to the app, which refuses it', async () => {
    const { json } = await postAuth(
      s.url,
      { channels: ['private-user.42'] },
      { cookie: 'user=42' },
    );
    const before = await counter.count();
    const res = await request(
      events(`channel=private-user.7&grant=${encodeURIComponent(json.grant)}`),
      { headers: { cookie: counter.cookie } },
    );
    expect(res.statusCode).toBe(403);
    expect(await res.body.text()).toContain('not authorized for channel "private-user.7"');
    expect((await counter.count()) - before).toBe(1);
    // A channel the grant does not cover, beside one it does, is asked of the app (and allowed).
    const mixed = await openStream(
      events(
        `channel=private-user.42&channel=private-chat.9&grant=${encodeURIComponent(json.grant)}`,
      ),
      { cookie: `user=42; ${counter.cookie}` },
    );
    expect(mixed.status).toBe(200);
    mixed.close();
    expect((await counter.count()) - before).toBe(2);
  });

  it.each([
    [
      'expired',
      () =>
        signGrant({ v: 1, c: ['private-user.42'], m: {}, s: '1.1', exp: Date.now() - 1 }, SECRET),
    ],
    [
      'forged (another secret)',
      () =>
        signGrant(
          { v: 1, c: ['private-user.42'], m: {}, s: '1.1', exp: Date.now() + 60_000 },
          'x'.repeat(40),
        ),
    ],
    [
      'tampered (channels swapped under the signature)',
      () => {
        const real = signGrant(
          { v: 1, c: ['private-user.1'], m: {}, s: '1.1', exp: Date.now() + 60_000 },
          SECRET,
        );
        const part = Buffer.from(
          JSON.stringify({
            v: 1,
            c: ['private-user.42'],
            m: {},
            s: '1.1',
            exp: Date.now() + 60_000,
          }),
        ).toString('base64url');
        return `${part}.${real.split('.')[1] ?? ''}`;
      },
    ],
    ['garbage', () => 'not-a-grant'],
  ])('an %s grant is a 401 telling the client to fetch a new one', async (_name, make) => {
    const before = await counter.count();
    const res = await request(
      events(`channel=private-user.42&grant=${encodeURIComponent(make())}`),
      { headers: { cookie: `user=42; ${counter.cookie}` } },
    );
    expect(res.statusCode).toBe(401);
    expect(await res.body.text()).toContain(
      'grant expired or invalid: fetch a new one from /askr/auth',
    );
    expect((await counter.count()) - before).toBe(0);
  });

  it('cookie or parameter: the askr_grant cookie works alone; the parameter wins over it', async () => {
    const answer = await postAuth(s.url, { channels: ['private-user.42'] }, { cookie: 'user=42' });
    const cookieGrant = answer.setCookie?.split(';')[0] ?? '';
    expect(cookieGrant).toBe(`askr_grant=${answer.json.grant}`);
    const before = await counter.count();
    const byCookie = await openStream(events('channel=private-user.42'), {
      cookie: `${cookieGrant}; ${counter.cookie}`,
    });
    expect(byCookie.status).toBe(200);
    expect(connectedOf(await byCookie.waitFor((f) => f.event === 'askr:connected'))).toEqual({
      socket_id: answer.json.socket_id,
      grant_expires_at: answer.json.expires_at,
      position: POSITION,
    });
    byCookie.close();
    expect((await counter.count()) - before).toBe(0);
    // A valid parameter beside a stale cookie: the parameter is used.
    const param = await openStream(
      events(`channel=private-user.42&grant=${encodeURIComponent(answer.json.grant)}`),
      { cookie: 'askr_grant=stale.grant' },
    );
    expect(param.status).toBe(200);
    param.close();
    // An invalid parameter beside a valid cookie: 401 (the parameter is what the client sent).
    const bad = await request(events('channel=private-user.42&grant=stale.grant'), {
      headers: { cookie: cookieGrant },
    });
    expect(bad.statusCode).toBe(401);
    await bad.body.text();
    // A stale cookie does not take down a stream of public channels (it needs no grant).
    const pub = await openStream(events('channel=news'), { cookie: 'askr_grant=stale.grant' });
    expect(pub.status).toBe(200);
    expect(
      connectedOf(await pub.waitFor((f) => f.event === 'askr:connected')).grant_expires_at,
    ).toBeNull();
    pub.close();
    // ...but it does one with a private channel: the client must refresh.
    const priv = await request(events('channel=private-user.42'), {
      headers: { cookie: 'user=42; askr_grant=stale.grant' },
    });
    expect(priv.statusCode).toBe(401);
    await priv.body.text();
  });

  it("socket id: the grant's, else a valid socket_id parameter, else a new one", async () => {
    const withParam = await openStream(events('channel=news&socket_id=77.88'));
    expect(connectedOf(await withParam.waitFor((f) => f.event === 'askr:connected'))).toEqual({
      socket_id: '77.88',
      grant_expires_at: null,
      position: POSITION,
    });
    withParam.close();
    const generated = await openStream(events('channel=news'));
    expect(
      connectedOf(await generated.waitFor((f) => f.event === 'askr:connected')).socket_id,
    ).toMatch(/^\d+\.\d+$/);
    generated.close();
    const bad = await request(events('channel=news&socket_id=x'));
    expect(bad.statusCode).toBe(400);
    expect(await bad.body.text()).toContain('socket_id must look like');
    const { json } = await postAuth(
      s.url,
      { channels: ['private-user.42'], socket_id: '5.6' },
      { cookie: 'user=42' },
    );
    const granted = await openStream(
      events(`channel=private-user.42&socket_id=9.9&grant=${encodeURIComponent(json.grant)}`),
    );
    expect(connectedOf(await granted.waitFor((f) => f.event === 'askr:connected')).socket_id).toBe(
      '5.6',
    );
    granted.close();
  });

  it('socket id: an askr_grant cookie that opens none of the channels never overrides socket_id', async () => {
    // The cookie is the origin's, not this page's: it may be another tab's grant (here 5.6).
    const { json, setCookie } = await postAuth(
      s.url,
      { channels: ['private-user.42'], socket_id: '5.6' },
      { cookie: 'user=42' },
    );
    const cookie = setCookie?.split(';')[0] ?? '';
    const socketOf = async (query: string, cookieHeader: string): Promise<string> => {
      const st = await openStream(events(query), { cookie: cookieHeader });
      expect(st.status).toBe(200);
      const connected = connectedOf(await st.waitFor((f) => f.event === 'askr:connected'));
      st.close();
      expect(connected.grant_expires_at).toBe(query.includes('private-') ? json.expires_at : null);
      return connected.socket_id;
    };
    // Public channels only: the parameter wins over a valid cookie and over a stale one.
    expect(await socketOf('channel=news&socket_id=77.88', cookie)).toBe('77.88');
    expect(await socketOf('channel=news&socket_id=77.88', 'askr_grant=stale.grant')).toBe('77.88');
    // Without a parameter, an unused cookie grant does not lend its socket id either.
    const fresh = await socketOf('channel=news', cookie);
    expect(fresh).toMatch(/^\d+\.\d+$/);
    expect(fresh).not.toBe('5.6');
    // Once the cookie grant opens a channel of the stream, its socket id is the stream's.
    expect(await socketOf('channel=news&channel=private-user.42&socket_id=77.88', cookie)).toBe(
      '5.6',
    );
  });

  it('X-Askr-Grant: opens its channels without PHP, wins over `grant` and the cookie, bounds the stream', async () => {
    const answer = await postAuth(
      s.url,
      { channels: ['private-user.42'], socket_id: '12.34' },
      { cookie: 'user=42' },
    );
    const { grant } = answer.json;
    const before = await counter.count();
    const byHeader = await openStream(events('channel=private-user.42'), {
      'x-askr-grant': grant,
      cookie: counter.cookie,
    });
    expect(byHeader.status).toBe(200);
    expect(connectedOf(await byHeader.waitFor((f) => f.event === 'askr:connected'))).toEqual({
      socket_id: '12.34',
      grant_expires_at: answer.json.expires_at,
      position: POSITION,
    });
    byHeader.close();
    expect((await counter.count()) - before).toBe(0);
    // A valid header beside a bad parameter and a stale cookie: the header is used.
    const precedence = await openStream(events('channel=private-user.42&grant=bad.grant'), {
      'x-askr-grant': grant,
      cookie: 'askr_grant=stale.grant',
    });
    expect(precedence.status).toBe(200);
    precedence.close();
    // A bad header beside a valid parameter: 401 (the header is what the client meant).
    const bad = await request(
      events(`channel=private-user.42&grant=${encodeURIComponent(grant)}`),
      { headers: { 'x-askr-grant': 'bad.grant' } },
    );
    expect(bad.statusCode).toBe(401);
    expect(await bad.body.text()).toContain('grant expired or invalid');
    // ...even for public channels only, as a bad `grant` parameter: the client sent it on purpose.
    const badPublic = await request(events('channel=news'), {
      headers: { 'x-askr-grant': 'bad.grant' },
    });
    expect(badPublic.statusCode).toBe(401);
    await badPublic.body.text();
    // A valid header on public channels: its expiry bounds the stream (the client refreshes it).
    const pub = await openStream(events('channel=news'), { 'x-askr-grant': grant });
    expect(
      connectedOf(await pub.waitFor((f) => f.event === 'askr:connected')).grant_expires_at,
    ).toBe(answer.json.expires_at);
    pub.close();
  });

  it('a cross-origin page may send X-Askr-Grant: the preflight allows it', async () => {
    const res = await request(events('channel=news'), {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'x-askr-grant',
      },
    });
    expect(res.statusCode).toBe(204);
    await res.body.text();
    const allowed = String(res.headers['access-control-allow-headers'])
      .split(',')
      .map((h) => h.trim().toLowerCase());
    expect(allowed).toEqual(expect.arrayContaining(['x-askr-grant', 'last-event-id']));
  });

  it('askr:connected carries the position: a stream with no event yet, reopened from it, gets what was published between', async () => {
    const url = events('channel=pos-news&channel=pos-sport');
    const first = await openStream(url);
    const { position } = connectedOf(await first.waitFor((f) => f.event === 'askr:connected'));
    // Nothing is published in this file meanwhile: the hub's own position, no channel.
    expect(position).toBe(`${s.hub.epoch}-${s.hub.seq}`);
    first.close();
    await until(() => s.hub.stats().connections === 0);
    // Published while the page has no stream (adding a channel, a new grant, a tab handover).
    s.hub.publish({ channels: ['pos-news'], data: Buffer.from('between'), ingress: 'internal' });
    s.hub.publish({ channels: ['elsewhere'], data: Buffer.from('other'), ingress: 'internal' });
    const again = await openStream(`${url}&lastEventId=${encodeURIComponent(position)}`);
    const replayed = await again.waitFor((f) => f.data === 'between');
    expect(replayed.id).toBe(`${s.hub.epoch}-${s.hub.seq - 1}@pos-news`);
    const second = connectedOf(
      again.frames.find((f) => f.event === 'askr:connected') ?? {
        comments: [],
      },
    );
    expect(second.position).toBe(`${s.hub.epoch}-${s.hub.seq}`);
    // Replayed exactly once, with no askr:lost: the position is an id the hub knows.
    s.hub.publish({ channels: ['pos-sport'], data: Buffer.from('live'), ingress: 'internal' });
    await again.waitFor((f) => f.data === 'live');
    expect(dataFrames(again.frames).map((f) => f.data)).toEqual(['between', 'live']);
    again.close();
    // Without the position (what a client without an event did before): the event is missed.
    const fresh = await openStream(url);
    await fresh.waitFor((f) => f.event === 'askr:connected');
    s.hub.publish({ channels: ['pos-news'], data: Buffer.from('later'), ingress: 'internal' });
    await fresh.waitFor((f) => f.data === 'later');
    expect(dataFrames(fresh.frames).map((f) => f.data)).toEqual(['later']);
    fresh.close();
  });

  it('channel names are repeated parameters: a comma is part of a name, not a separator', async () => {
    // Pusher's charset (issue 12): "a,b@c;d" is one channel.
    const st = await openStream(events(`channel=${encodeURIComponent('a,b@c;d')}&channel=a`));
    expect(st.status).toBe(200);
    await until(() => s.hub.stats().channels >= 2);
    s.hub.publish({ channels: ['b'], data: Buffer.from('to-b'), ingress: 'internal' });
    s.hub.publish({ channels: ['a,b@c;d'], data: Buffer.from('to-abcd'), ingress: 'internal' });
    const f = await st.waitFor((x) => x.data === 'to-abcd');
    expect(f.id).toMatch(/@a,b@c;d$/);
    expect(st.frames.some((x) => x.data === 'to-b')).toBe(false);
    st.close();
  });
});

describe('grant lifetime and secret', () => {
  it('a stream opened with a grant ends when the grant expires', async () => {
    const short = await startTestSidecar({ ...GRANTS_APP, 'sse.grant_ttl': '1s' });
    try {
      const { json } = await postAuth(
        short.url,
        { channels: ['private-user.42'] },
        { cookie: 'user=42' },
      );
      const st = await openStream(
        `${short.url}/askr/events?channel=private-user.42&grant=${encodeURIComponent(json.grant)}`,
      );
      expect(st.status).toBe(200);
      await st.ended;
      expect(Date.now()).toBeGreaterThanOrEqual(json.expires_at);
      // Reconnecting with it now is a 401: the client refreshes before expires_at.
      await sleep(10);
      const late = await request(
        `${short.url}/askr/events?channel=private-user.42&grant=${encodeURIComponent(json.grant)}`,
      );
      expect(late.statusCode).toBe(401);
      await late.body.text();
      // Without sse.grant_secret the process signs with a random secret, and says so.
      expect(
        short.logs.some(
          (l) =>
            l['key'] === 'sse.grant_secret' &&
            String(l['msg']).includes('grants do not survive a restart'),
        ),
      ).toBe(true);
      // ...so a grant of another process (here: the first sidecar's) is not valid here.
      const other = await postAuth(s.url, { channels: ['private-user.42'] }, { cookie: 'user=42' });
      const foreign = await request(
        `${short.url}/askr/events?channel=private-user.42&grant=${encodeURIComponent(other.json.grant)}`,
      );
      expect(foreign.statusCode).toBe(401);
      await foreign.body.text();
    } finally {
      await short.close();
    }
  });
});
