/**
 * Issue 12 end to end, against the real sidecar, php-fpm, PHP publishers (php/src/askr.php, the
 * Laravel fixture's AskrBroadcaster) and a real Redis: an event published to several channels
 * reaches a stream subscribed to them as one frame per channel, in publish order; a connection
 * cut between two frames of one event resumes with the later ones (one node, and a node that
 * joined the cluster after the event); toOthers() leaves out the stream with the publisher's
 * socket id, live and in a replay, and the socket id never reaches subscribers' data (new
 * broadcaster: a datagram header key; an older one: cut from the payload on ingest); channel names
 * with Pusher's `@ , ;`. A regression looks like: one frame tagged with the first channel (Echo's
 * listeners on the other channel never fire), a resume that skips or repeats a frame, the
 * sender's own page getting its message, or `"socket"` in the data.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeDatagram } from '../src/broadcast/datagram-codec.ts';
import { startNode } from './helpers/cluster.ts';
import { assertLaravelInstalled, makeLaravelApp } from './helpers/laravel-app.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { openStream, type Frame, type SseStream } from './helpers/sse-client.ts';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../php/src/askr.php', import.meta.url));
const TOKEN = 'per-channel-token';

let tmp = '';
let s: TestSidecar | undefined;
let socketPath = '';
const streams: SseStream[] = [];

beforeAll(async () => {
  tmp = await phpTempDir('askr-per-channel-');
  socketPath = join(tmp, 'askr.sock');
  s = await startTestSidecar({
    'broadcast.socket': socketPath,
    'sse.publish_token': TOKEN,
    'sse.history_size': '50',
  });
});
afterEach(() => {
  for (const st of streams.splice(0)) st.close();
});
afterAll(async () => {
  await s?.close();
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

function sidecar(): TestSidecar {
  if (s === undefined) throw new Error('the sidecar did not start');
  return s;
}

/** Runs PHP code with the shim loaded and ASKR_SOCKET set; returns its stdout. */
async function php(code: string, socket = socketPath): Promise<string> {
  const { stdout } = await run('php', ['-r', `require ${JSON.stringify(SHIM)}; ${code}`], {
    env: { ...process.env, ASKR_SOCKET: socket },
  });
  return stdout;
}

/** askr_publish() from PHP CLI; fails the test with askr_last_error() when it returns false. */
async function phpPublish(args: string): Promise<void> {
  const out = await php(`echo askr_publish(${args}) ? 'ok' : askr_last_error();`);
  expect(out).toBe('ok');
}

/** A stream of the events endpoint on `channels` (each its own `channel=`), once subscribed. */
async function stream(
  channels: string[],
  options: { socketId?: string; lastEventId?: string; node?: TestSidecar } = {},
): Promise<SseStream> {
  const query = new URLSearchParams(channels.map((c): [string, string] => ['channel', c]));
  if (options.socketId !== undefined) query.set('socket_id', options.socketId);
  const headers: Record<string, string> =
    options.lastEventId === undefined ? {} : { 'last-event-id': options.lastEventId };
  const st = await openStream(
    `${(options.node ?? sidecar()).url}/askr/events?${query.toString()}`,
    headers,
  );
  streams.push(st);
  expect(st.status, st.body).toBe(200);
  // askr:connected follows retry: once the stream is in the hub.
  await st.waitFor((f) => f.event === 'askr:connected');
  return st;
}

/** The frames of published events (no askr:connected, presence or askr:lost). */
const events = (st: SseStream): Frame[] =>
  st.frames.filter((f) => f.data !== undefined && !(f.event ?? '').startsWith('askr:'));
const idAndData = (st: SseStream): string[] => events(st).map((f) => `${tagOf(f)} ${f.data}`);
/** `<epoch>-<seq - 1>`: the position just before the frame's event. */
const idBefore = (f: Frame | undefined): string => {
  const [, epoch = '', seq = '0'] = /^(.*)-(\d+)@/.exec(f?.id ?? '') ?? [];
  return `${epoch}-${Number(seq) - 1}`;
};
/** `<seq>@<channel>` of a frame's id (the epoch left out). */
const tagOf = (f: Frame): string => (f.id ?? '').replace(/^[^@]*-(\d+)@/, '$1@');

describe('one frame per subscribed channel', () => {
  it('an event published to two channels of a stream reaches it as two frames, in publish order', async () => {
    const st = await stream(['pc-a', 'pc-b']);
    const onlyA = await stream(['pc-a']);
    await phpPublish(`['pc-b', 'pc-x', 'pc-a'], '{"n":1}', event: 'App\\\\Events\\\\Ping'`);
    await st.waitFor((f) => f.id?.endsWith('@pc-a') === true);
    const [first, second] = events(st);
    expect([first?.id?.split('@')[1], second?.id?.split('@')[1]]).toEqual(['pc-b', 'pc-a']);
    // Same event, same data, same seq: only the channel tag differs.
    expect(first?.id?.split('@')[0]).toBe(second?.id?.split('@')[0]);
    for (const f of [first, second]) {
      expect(f).toMatchObject({ event: 'App\\Events\\Ping', data: '{"n":1}' });
    }
    await onlyA.waitFor((f) => f.data === '{"n":1}');
    expect(events(onlyA).map((f) => f.id?.split('@')[1])).toEqual(['pc-a']);
  });

  it('a connection cut between the two frames of an event resumes with the second, then the rest', async () => {
    const st = await stream(['cut-a', 'cut-b', 'cut-c']);
    await phpPublish(`['cut-a', 'cut-b', 'cut-c'], 'e1'`);
    const firstFrame = await st.waitFor((f) => f.data === 'e1');
    expect(firstFrame.id).toMatch(/@cut-a$/);
    st.close(); // the page saw e1 on cut-a only
    await phpPublish(`['cut-c'], 'e2'`);
    await phpPublish(`['cut-b', 'cut-a'], 'e3'`);

    const resumed = await stream(['cut-a', 'cut-b', 'cut-c'], { lastEventId: firstFrame.id ?? '' });
    await phpPublish(`'cut-b', 'live'`);
    await resumed.waitFor((f) => f.data === 'live');
    const seq = Number(/-(\d+)@/.exec(firstFrame.id ?? '')?.[1]);
    expect(idAndData(resumed)).toEqual([
      `${seq}@cut-b e1`,
      `${seq}@cut-c e1`,
      `${seq + 1}@cut-c e2`,
      `${seq + 2}@cut-b e3`,
      `${seq + 2}@cut-a e3`,
      `${seq + 3}@cut-b live`,
    ]);
    expect(resumed.frames.some((f) => f.event === 'askr:lost')).toBe(false);

    // Resuming from the last frame of an event (or an id without a channel) repeats nothing of it.
    const fromLast = await stream(['cut-a', 'cut-b', 'cut-c'], {
      lastEventId: `${(firstFrame.id ?? '').split('@')[0]}@cut-c`,
    });
    const noTag = await stream(['cut-a', 'cut-b', 'cut-c'], {
      lastEventId: (firstFrame.id ?? '').split('@')[0] ?? '',
    });
    for (const again of [fromLast, noTag]) {
      await again.waitFor((f) => f.data === 'live');
      expect(idAndData(again)[0]).toBe(`${seq + 1}@cut-c e2`);
    }
  });
});

describe('the publisher`s own stream (toOthers)', () => {
  it('askr_broadcast with a socket id: every stream but that one gets it, the data as sent', async () => {
    const sender = await stream(['chat-1'], { socketId: '111.222' });
    const other = await stream(['chat-1'], { socketId: '333.444' });
    const connected = await sender.waitFor((f) => f.event === 'askr:connected');
    expect(JSON.parse(connected.data ?? '{}')).toMatchObject({ socket_id: '111.222' });
    expect(await php(`var_export(askr_broadcast('chat-1', '{"m":1}', '111.222'));`)).toBe('true');
    expect(await php(`var_export(askr_broadcast('chat-1', '{"m":2}'));`)).toBe('true');
    await other.waitFor((f) => f.data === '{"m":2}');
    await sender.waitFor((f) => f.data === '{"m":2}');
    expect(events(other).map((f) => f.data)).toEqual(['{"m":1}', '{"m":2}']);
    expect(events(sender).map((f) => f.data)).toEqual(['{"m":2}']);

    // The same socket resuming from before both (a reconnect with its grant): still not its own.
    const before = idBefore(events(other)[0]);
    const again = await stream(['chat-1'], { socketId: '111.222', lastEventId: before });
    const fresh = await stream(['chat-1'], { socketId: '555.666', lastEventId: before });
    await again.waitFor((f) => f.data === '{"m":2}');
    await fresh.waitFor((f) => f.data === '{"m":2}');
    expect(events(again).map((f) => f.data)).toEqual(['{"m":2}']);
    expect(events(fresh).map((f) => f.data)).toEqual(['{"m":1}', '{"m":2}']);
  });

  it('an older broadcaster`s payload: the trailing "socket" member is cut and used as the socket', async () => {
    const sender = await stream(['chat-2'], { socketId: '7.8' });
    const other = await stream(['chat-2'], { socketId: '9.10' });
    // What AskrBroadcaster wrote before the socket header key (the member appended last).
    await phpPublish(
      `'chat-2', '{"user":"Bob","text":"hi","socket":"7.8"}', event: 'message.posted'`,
    );
    // Not that shape: delivered byte for byte, to everyone.
    await phpPublish(`'chat-2', '{"socket":"7.8","text":"kept"}'`);
    await other.waitFor((f) => f.data?.includes('kept') === true);
    await sender.waitFor((f) => f.data?.includes('kept') === true);
    expect(events(other).map((f) => f.data)).toEqual([
      '{"user":"Bob","text":"hi"}',
      '{"socket":"7.8","text":"kept"}',
    ]);
    expect(events(sender).map((f) => f.data)).toEqual(['{"socket":"7.8","text":"kept"}']);
  });

  it('HTTP publish takes "socket" as a field, checks it, and never puts it in the data', async () => {
    const sender = await stream(['chat-3'], { socketId: '1.2' });
    const other = await stream(['chat-3']);
    const publish = async (body: unknown): Promise<{ status: number; text: string }> => {
      const res = await request(`${sidecar().url}/askr/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.statusCode, text: await res.body.text() };
    };
    expect((await publish({ channel: 'chat-3', data: 'x', socket: '1.2' })).status).toBe(202);
    expect(await publish({ channel: 'chat-3', data: 'x', socket: 'nope' })).toMatchObject({
      status: 400,
      text: expect.stringContaining('"socket" must be <digits>.<digits>') as unknown,
    });
    expect((await publish({ channel: 'chat-3', data: 'y' })).status).toBe(202);
    await sender.waitFor((f) => f.data === 'y');
    await other.waitFor((f) => f.data === 'y');
    expect(events(sender).map((f) => f.data)).toEqual(['y']);
    expect(events(other).map((f) => f.data)).toEqual(['x', 'y']);
  });

  it('the PHP shim encodes the socket key byte for byte as the sidecar does, and refuses a bad one', async () => {
    const out = await php(
      `echo base64_encode(askr_encode_datagram(['a@b', 'c'], '{}', 'e', null, false, '12.34')), "\\n";
       var_export(askr_publish('a', 'x', socket: '12'));
       echo "\\n", askr_last_error();`,
    );
    const [encoded, ok, error] = out.split('\n');
    expect(encoded).toBe(
      encodeDatagram({ channels: ['a@b', 'c'], data: '{}', event: 'e', socket: '12.34' }).toString(
        'base64',
      ),
    );
    expect(ok).toBe('false');
    expect(error).toMatch(/socket must be <digits>\.<digits>/);
  });
});

describe('Pusher`s channel charset', () => {
  const names = ['user@example.com', 'a,b', 'c;d', 'x@y;z,w=1'];

  it('names with @ , ; are published to from PHP, subscribed to, tagged and resumed', async () => {
    const st = await stream(names);
    await phpPublish(`${JSON.stringify(names)}, 'hi'`);
    await st.waitFor((f) => f.id?.endsWith('@x@y;z,w=1') === true);
    const tags = events(st).map((f) => (f.id ?? '').slice((f.id ?? '').indexOf('@') + 1));
    expect(tags).toEqual(names);
    // `channel=a,b` is the one channel "a,b", and an id naming it resumes after it.
    const resumed = await stream(names, { lastEventId: events(st)[1]?.id ?? '' });
    await resumed.waitFor((f) => f.id?.endsWith('@x@y;z,w=1') === true);
    expect(events(resumed).map((f) => f.id?.slice(f.id.indexOf('@') + 1))).toEqual(names.slice(2));
  });

  it('other characters are still refused, with the charset named; askr_subscribe refuses , and ;', async () => {
    const res = await request(`${sidecar().url}/askr/events?channel=a%3Ab`);
    expect(res.statusCode).toBe(400);
    expect(await res.body.text()).toContain('outside A-Z a-z 0-9 _ - = @ , . ;');
    expect(await php(`var_export(askr_publish('a:b', 'x')); echo ' ', askr_last_error();`)).toMatch(
      /^false channel name "a:b" has a character outside A-Z a-z 0-9 _ - = @ , \. ;$/,
    );
    const held = await php(
      `set_error_handler(fn () => true); askr_subscribe(['ok@x', 'a,b']); echo askr_last_error();`,
    );
    expect(held).toContain('"a,b" has a "," or ";"');
  });
});

describe('in a cluster', () => {
  let redis: TestRedis | undefined;
  let dir = '';
  const nodes: TestSidecar[] = [];
  beforeAll(async () => {
    dir = await phpTempDir('askr-per-channel-cluster-');
    redis = await startRedis();
    nodes.push(await startNode(redis, dir, 'pc-node-0', { token: TOKEN }));
  });
  afterAll(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close()));
    await redis?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  const httpPublish = async (node: TestSidecar, body: unknown): Promise<void> => {
    const res = await request(`${node.url}/askr/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.statusCode, await res.body.text()).toBe(202);
  };

  it('a node that joined after the event resumes a cut between its frames from the shared history; the socket crosses nodes', async () => {
    const [first] = nodes as [TestSidecar];
    const st = await stream(['cl-a', 'cl-b'], { node: first });
    await httpPublish(first, { channels: ['cl-a', 'cl-b'], data: 'both' });
    const cut = await st.waitFor((f) => f.data === 'both');
    expect(cut.id).toMatch(/@cl-a$/);
    st.close();

    // Joins after the event: its own history has nothing of it.
    const late = await startNode(redis as TestRedis, dir, 'pc-node-1', { token: TOKEN });
    nodes.push(late);
    const resumed = await stream(['cl-a', 'cl-b'], { node: late, lastEventId: cut.id ?? '' });
    const sender = await stream(['cl-a'], { node: late, socketId: '42.1' });
    // Published on the first node with the late node's stream as its sender.
    await httpPublish(first, { channels: ['cl-a'], data: 'not-for-42.1', socket: '42.1' });
    await httpPublish(first, { channels: ['cl-a'], data: 'last' });
    await resumed.waitFor((f) => f.data === 'last', 10_000);
    await sender.waitFor((f) => f.data === 'last', 10_000);
    const seq = Number(/-(\d+)@/.exec(cut.id ?? '')?.[1]);
    expect(idAndData(resumed)).toEqual([
      `${seq}@cl-b both`,
      `${seq + 1}@cl-a not-for-42.1`,
      `${seq + 2}@cl-a last`,
    ]);
    expect(resumed.frames.some((f) => f.event === 'askr:lost')).toBe(false);
    expect(events(sender).map((f) => f.data)).toEqual(['last']);
  });
});

describe('Laravel: broadcast(...)->toOthers() through AskrBroadcaster', () => {
  let laravel: TestSidecar | undefined;
  let dir = '';
  beforeAll(async () => {
    await assertLaravelInstalled();
    dir = await phpTempDir('askr-per-channel-laravel-');
    const socket = join(dir, 'askr.sock');
    const app = await makeLaravelApp(dir, socket);
    laravel = await startTestSidecar({
      'server.root': join(app, 'public'),
      'broadcast.socket': socket,
    });
  });
  afterAll(async () => {
    await laravel?.close();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  const postChat = async (text: string, headers: Record<string, string>): Promise<void> => {
    const res = await request(`${laravel?.url ?? ''}/api/chat`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        authorization: 'Bearer bob-token',
        ...headers,
      },
      body: JSON.stringify({ text }),
    });
    expect(res.statusCode, await res.body.text()).toBe(200);
  };

  it('the sender`s stream (its X-Socket-ID) skips the message, the others get it without "socket"', async () => {
    const node = laravel as TestSidecar;
    const sender = await stream(['chat'], { node, socketId: '123.456' });
    const other = await stream(['chat'], { node, socketId: '654.321' });
    await postChat('one', { 'x-socket-id': '123.456' });
    // A forged, malformed X-Socket-ID is ignored: the event goes to everyone.
    await postChat('two', { 'x-socket-id': 'not-a-socket' });
    await other.waitFor((f) => f.data?.includes('two') === true, 10_000);
    await sender.waitFor((f) => f.data?.includes('two') === true, 10_000);
    const messages = (st: SseStream): unknown[] =>
      events(st)
        .filter((f) => f.event === 'message.posted')
        .map((f) => JSON.parse(f.data ?? 'null') as unknown);
    expect(messages(other)).toEqual([
      { user: 'Bob', text: 'one' },
      { user: 'Bob', text: 'two' },
    ]);
    expect(messages(sender)).toEqual([{ user: 'Bob', text: 'two' }]);
  });
});
