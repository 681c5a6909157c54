/**
 * The Laravel integration end to end: a real Laravel 8 app (Debian's php-laravel-framework,
 * fixtures-php/laravel, copied to a temp dir with its own .env, SQLite file and socket) on the
 * shared real php-fpm behind a real sidecar. Broadcasts from a controller, a queued job run by
 * `artisan queue:work`, and console commands must reach EventSource subscribers; routes/channels.php
 * decides private/presence access through the sidecar's internal /broadcasting/auth request.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EventSource } from 'eventsource';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artisan, assertLaravelInstalled, makeLaravelApp } from './helpers/laravel-app.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import {
  CONNECTED_EVENT,
  connectedSocketId,
  dataFrames,
  openStream,
  type Frame,
  type SseStream,
} from './helpers/sse-client.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

let tmp = '';
let app = '';
let s: TestSidecar | undefined;
const toClose: Array<{ close(): void }> = [];

beforeAll(async () => {
  await assertLaravelInstalled();
  tmp = await phpTempDir('askr-laravel-');
  const socket = join(tmp, 'askr.sock');
  app = await makeLaravelApp(tmp, socket);
  s = await startTestSidecar({ 'server.root': join(app, 'public'), 'broadcast.socket': socket });
});

afterAll(async () => {
  for (const c of toClose) c.close();
  await s?.close();
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

function sidecar(): TestSidecar {
  if (s === undefined) throw new Error('the sidecar did not start');
  return s;
}

const bearer = (user: string): Record<string, string> => ({
  authorization: `Bearer ${user}-token`,
});

/** An `eventsource` EventSource (browser semantics) that authenticates with a bearer token. */
async function eventSource(channels: string[], user: string | null): Promise<EventSource> {
  const query = channels.map((c) => `channel=${encodeURIComponent(c)}`).join('&');
  const es = new EventSource(`${sidecar().url}/askr/events?${query}`, {
    fetch: (url, init) =>
      fetch(url, { ...init, headers: { ...init.headers, ...(user ? bearer(user) : {}) } }),
  });
  toClose.push(es);
  await new Promise<void>((resolve, reject) => {
    es.onopen = () => resolve();
    es.onerror = (e) => reject(new Error(`stream refused: ${e.message ?? e.code ?? ''}`));
  });
  return es;
}

/** The next `type` event on `es` whose data matches. */
function nextEvent(
  es: EventSource,
  type: string,
  match: (data: Record<string, unknown>) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<{ data: Record<string, unknown>; id: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      es.removeEventListener(type, onEvent);
      reject(new Error(`no ${type} event within ${timeoutMs} ms`));
    }, timeoutMs);
    function onEvent(e: MessageEvent): void {
      const data = JSON.parse(String(e.data)) as Record<string, unknown>;
      if (!match(data)) return;
      clearTimeout(timer);
      es.removeEventListener(type, onEvent);
      resolve({ data, id: e.lastEventId });
    }
    es.addEventListener(type, onEvent);
  });
}

async function post(
  path: string,
  user: string | null,
  body: unknown = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown }> {
  const res = await request(`${sidecar().url}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(user ? bearer(user) : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text === '' ? null : (JSON.parse(text) as unknown) };
}

async function stream(
  channels: string[],
  user: string | null,
  socketId?: string,
): Promise<SseStream> {
  const query = new URLSearchParams(channels.map((c): [string, string] => ['channel', c]));
  if (socketId !== undefined) query.set('socket_id', socketId);
  const st = await openStream(
    `${sidecar().url}/askr/events?${query.toString()}`,
    user ? bearer(user) : {},
  );
  toClose.push(st);
  return st;
}

const SHIPPED = 'App\\Events\\OrderShipped';

describe('broadcasting from Laravel reaches EventSource subscribers', () => {
  it('from a controller: the class name is the event, broadcastWith() the data', async () => {
    const es = await eventSource(['private-orders.1'], 'alice');
    const got = nextEvent(es, SHIPPED, (d) => d['via'] === 'controller');
    const res = await post('/api/orders/1/ship', 'alice');
    expect(res).toEqual({ status: 200, json: { id: 1, status: 'shipped' } });
    const event = await got;
    expect(event.data).toEqual({ id: 1, status: 'shipped', via: 'controller' });
    expect(event.id).toMatch(/^[A-Za-z0-9]+-\d+@private-orders\.1$/);
  });

  it('from a queued job processed by `artisan queue:work` (database queue)', async () => {
    const es = await eventSource(['private-orders.1'], 'alice');
    const got = nextEvent(es, SHIPPED, (d) => d['via'] === 'job');
    const res = await post('/api/orders/1/ship-later', 'alice');
    expect(res).toEqual({ status: 202, json: { id: 1, queued: true } });
    // --sleep=0: an idle worker sleeps before it notices the queue is empty.
    const worker = await artisan(app, [
      'queue:work',
      'database',
      '--stop-when-empty',
      '--sleep=0',
      '--tries=1',
    ]);
    expect(worker.stdout).toContain('Processed:');
    expect(worker.stdout).toContain('App\\Jobs\\ShipOrder');
    expect((await got).data).toEqual({ id: 1, status: 'shipped', via: 'job' });
  });

  it('from console commands: a command class and a closure command', async () => {
    const es = await eventSource(['private-orders.1', 'chat'], 'alice');
    const shipped = nextEvent(es, SHIPPED, (d) => d['via'] === 'console');
    const out = await artisan(app, ['orders:ship', '1']);
    expect(out.stdout).toContain('order 1 shipped');
    expect((await shipped).data).toEqual({ id: 1, status: 'shipped', via: 'console' });

    const said = nextEvent(es, 'message.posted');
    await artisan(app, ['chat:say', 'hello from the console']);
    const event = await said;
    // broadcastAs() names the event; public properties are the data; no `socket` key without toOthers().
    expect(event.data).toEqual({ user: 'console', text: 'hello from the console' });
    expect(event.id).toMatch(/@chat$/);
  });

  it('toOthers(): the stream whose socket id is the X-Socket-ID does not get the event, and no data carries it', async () => {
    const sender = await stream(['chat'], null, '123.456');
    const other = await stream(['chat'], null, '777.888');
    await sender.waitFor((f) => f.event === CONNECTED_EVENT);
    await other.waitFor((f) => f.event === CONNECTED_EVENT);
    expect(connectedSocketId(sender.frames)).toBe('123.456');
    expect(connectedSocketId(other.frames)).toBe('777.888');
    await post('/api/chat', 'bob', { text: 'one' }, { 'x-socket-id': '123.456' });
    // No X-Socket-ID: for every stream. It comes after 'one' on each, so a sender that has 'two'
    // and not 'one' was left out of 'one' (no waiting on a timeout).
    await post('/api/chat', 'bob', { text: 'two' });
    const posted = (st: SseStream): unknown[] =>
      dataFrames(st.frames)
        .filter((f) => f.event === 'message.posted')
        .map((f) => JSON.parse(f.data ?? '') as unknown);
    for (const st of [sender, other]) {
      await st.waitFor((f) => f.event === 'message.posted' && f.data?.includes('two') === true);
    }
    expect(posted(other)).toEqual([
      { user: 'Bob', text: 'one' },
      { user: 'Bob', text: 'two' },
    ]);
    expect(posted(sender)).toEqual([{ user: 'Bob', text: 'two' }]);
  });

  it('a failed publish throws BroadcastException naming the cause, or logs it with throw off', async () => {
    // A real environment variable wins over .env (Laravel's dotenv is immutable).
    const failed = await artisan(app, ['orders:ship', '2'], {
      ASKR_SOCKET: join(tmp, 'nobody.sock'),
    }).then(
      () => null,
      (err: unknown) => err as { code: number; stdout: string; stderr: string },
    );
    expect(failed?.code).toBe(1);
    // Symfony's console wraps the message in a box: join the lines again.
    const output = `${failed?.stdout ?? ''}${failed?.stderr ?? ''}`.replace(/\s+/g, ' ');
    expect(output).toContain('cannot broadcast App\\Events\\OrderShipped to private-orders.2');
    expect(output).toContain('cannot reach the askr sidecar');

    // 'throw' => false (ASKR_THROW): the command succeeds and the failure is logged instead.
    const logged = await artisan(app, ['orders:ship', '2'], {
      ASKR_SOCKET: join(tmp, 'nobody.sock'),
      ASKR_THROW: 'false',
    });
    expect(logged.stdout).toContain('order 2 shipped');
  });
});

describe('channel authorization through routes/channels.php', () => {
  it('a private channel is granted to its owner, refused (403) to another user and to a guest', async () => {
    const owner = await stream(['private-orders.1'], 'alice');
    expect(owner.status).toBe(200);
    const other = await stream(['private-orders.1'], 'bob');
    expect(other.status).toBe(403);
    await other.ended;
    expect(other.body).toContain('not authorized for channel "private-orders.1"');
    const guest = await stream(['private-orders.1'], null);
    expect(guest.status).toBe(403);
    // Bob's own order is his; Laravel's per-user channel too.
    expect((await stream(['private-orders.2', 'private-App.Models.User.2'], 'bob')).status).toBe(
      200,
    );
    expect((await stream(['private-App.Models.User.1'], 'bob')).status).toBe(403);
  });

  it('the auth route answers in the shape the sidecar reads', async () => {
    const auth = (
      channel: string,
      user: string | null,
    ): Promise<{ status: number; json: unknown }> =>
      post('/broadcasting/auth', user, { channel_name: channel, socket_id: '1.2' });
    expect(await auth('private-orders.1', 'alice')).toEqual({ status: 200, json: { auth: true } });
    expect(await auth('presence-room.1', 'alice')).toEqual({
      status: 200,
      json: { channel_data: { user_id: 1, user_info: { id: 1, name: 'Alice' } } },
    });
    expect((await auth('private-orders.1', 'bob')).status).toBe(403);
    expect((await auth('presence-room.1', null)).status).toBe(403);
  });
});

describe('presence channels', () => {
  const presence = (f: Frame): boolean => f.event?.startsWith('askr:presence.') ?? false;
  const payload = (f: Frame): Record<string, unknown> =>
    JSON.parse(f.data ?? 'null') as Record<string, unknown>;

  it('member list, join when a user`s first stream opens, leave when their last one closes', async () => {
    const alice = await stream(['presence-room.2'], 'alice');
    expect(alice.status).toBe(200);
    const first = await alice.waitFor(presence);
    expect(first.event).toBe('askr:presence.members');
    expect(payload(first)).toEqual({
      channel: 'presence-room.2',
      members: [{ user_id: 1, user_info: { id: 1, name: 'Alice' } }],
    });

    const bob = await stream(['presence-room.2'], 'bob');
    const bobFirst = await bob.waitFor(presence);
    expect(bobFirst.event).toBe('askr:presence.members');
    const members = (payload(bobFirst)['members'] as Array<{ user_id: number }>).map(
      (m) => m.user_id,
    );
    expect(members.sort()).toEqual([1, 2]);
    const joined = await alice.waitFor(
      (f) => f.event === 'askr:presence.join' && payload(f)['member'] !== undefined,
    );
    expect(payload(joined)).toEqual({
      channel: 'presence-room.2',
      member: { user_id: 2, user_info: { id: 2, name: 'Bob' } },
    });

    // A second tab of Alice: no join for her (she is present), and closing it is no leave.
    const aliceTab = await stream(['presence-room.2'], 'alice');
    await aliceTab.waitFor(presence);
    aliceTab.close();
    await aliceTab.ended;
    bob.close();
    const next = await alice.waitFor(
      (f) => presence(f) && f !== first && f !== joined,
      10_000,
      alice.frames.indexOf(joined) + 1,
    );
    expect(next.event).toBe('askr:presence.leave');
    expect(payload(next)).toEqual({
      channel: 'presence-room.2',
      member: { user_id: 2, user_info: { id: 2, name: 'Bob' } },
    });
  });

  it('a guest cannot join a presence channel', async () => {
    expect((await stream(['presence-room.2'], null)).status).toBe(403);
  });
});

describe('the app ran cleanly', () => {
  it('PHP wrote nothing to FPM stderr and Laravel logged only the expected failure', async () => {
    const stderr = sidecar().logs.filter((l) => String(l['msg']).startsWith('PHP stderr'));
    expect(stderr).toEqual([]);
    const log = await readFile(join(app, 'storage/logs/laravel.log'), 'utf8');
    const entries = log.split('\n').filter((l) => /^\[\d{4}-/.test(l));
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatch(/local\.ERROR: askr: cannot broadcast .*nobody\.sock/);
    expect(entries[1]).toMatch(/local\.WARNING: askr: cannot broadcast .*nobody\.sock/);
  });
});
