// The hub end to end: a real node:http server hands its responses to the hub (as src/http will)
// and real clients read them: the `eventsource` package (spec-conformant EventSource, including
// automatic reconnection with Last-Event-ID), raw HTTP for byte-level checks, and a raw TCP
// client that never reads (a slow consumer).
import { once, EventEmitter } from 'node:events';
import { createServer, get, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { EventSource } from 'eventsource';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { Hub, type HubOptions } from './hub.ts';

interface Received {
  type: string;
  data: string;
  lastEventId: string;
}

interface Harness {
  hub: Hub;
  url: string;
  port: number;
  /** Stream handles in subscribe order (to end a stream from the server side). */
  handles: { close(): void }[];
  /** Resolves once `predicate` holds, re-checked whenever the subscriber set changes. */
  until(predicate: () => boolean): Promise<void>;
  counts: { slow: number; replayed: number[]; lost: string[] };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const silent = pino({ level: 'silent' });

async function start(options: Partial<HubOptions> = {}): Promise<Harness> {
  const changed = new EventEmitter();
  const counts: Harness['counts'] = { slow: 0, replayed: [], lost: [] };
  const hub = new Hub({
    historySize: 100,
    historyMaxAgeMs: 60_000,
    subscriberQueueBytes: 1 << 20,
    heartbeatIntervalMs: 60_000,
    maxLifetimeMs: 0,
    idleTimeoutMs: 0,
    retryMs: 20,
    maxConnections: 100,
    maxConnectionsPerIp: 100,
    logger: silent,
    hooks: {
      onSubscribersChanged: () => changed.emit('changed'),
      onSlowConsumer: () => counts.slow++,
      onReplay: (n) => counts.replayed.push(n),
      onLost: (reason) => counts.lost.push(reason),
    },
    ...options,
  });
  const handles: { close(): void }[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const clientIp = req.socket.remoteAddress ?? '';
    // As src/sse does: take the place first (a refusal is an error with a code), then the head;
    // subscribe() with the same response takes the place.
    try {
      hub.reserve(res, clientIp);
    } catch (err) {
      expect(err).toMatchObject({ code: ErrorCodes.LIMIT });
      res.writeHead(429, { 'content-type': 'text/plain' }).end((err as Error).message);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const header = req.headers['last-event-id'];
    handles.push(
      hub.subscribe({
        sink: res,
        channels: url.searchParams.getAll('channel'),
        lastEventId: typeof header === 'string' ? header : url.searchParams.get('lastEventId'),
        clientIp,
        kind: 'events',
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  cleanups.push(async () => {
    hub.closeAll(0);
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  const until = async (predicate: () => boolean): Promise<void> => {
    while (!predicate()) await once(changed, 'changed');
  };
  return { hub, url: `http://127.0.0.1:${port}/`, port, handles, until, counts };
}

/** An EventSource whose events (of the given types besides 'message') are collected in order. */
function open(url: string, types: string[] = []) {
  const es = new EventSource(url);
  cleanups.push(() => es.close());
  const events: Received[] = [];
  const arrived = new EventEmitter();
  const push = (e: MessageEvent): void => {
    const payload: unknown = e.data; // EventSource data is always a string
    events.push({ type: e.type, data: String(payload), lastEventId: e.lastEventId });
    arrived.emit('event');
  };
  es.addEventListener('message', push);
  for (const type of types) es.addEventListener(type, push);
  return {
    es,
    events,
    opened: once(es, 'open'),
    /** Resolves when at least `n` events arrived. */
    async count(n: number): Promise<Received[]> {
      while (events.length < n) await once(arrived, 'event');
      return events;
    },
  };
}

/** A raw GET whose body is accumulated as text. */
async function rawGet(url: string): Promise<{ res: IncomingMessage; body: () => string }> {
  const req = get(url);
  cleanups.push(() => {
    req.destroy();
  });
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (text += chunk));
  return { res, body: () => text };
}

const data = (s: string): Buffer => Buffer.from(s);

describe('Hub over HTTP with EventSource', () => {
  it('delivers live events on one channel, with `<epoch>-<seq>@<channel>` ids', async () => {
    const h = await start();
    const client = open(`${h.url}?channel=orders`);
    await client.opened;
    const result = h.hub.publish({
      channels: ['orders'],
      data: data('{"id":42}'),
      ingress: 'internal',
    });
    expect(result).toEqual({ id: `${h.hub.epoch}-1`, subscribers: 1, closed: 0 });
    expect(await client.count(1)).toEqual([
      { type: 'message', data: '{"id":42}', lastEventId: `${h.hub.epoch}-1@orders` },
    ]);
  });

  it('tags each frame with its channel: an event on two of a stream`s channels is two frames, in publish order', async () => {
    const h = await start();
    const both = open(`${h.url}?channel=a&channel=b`, ['upd']);
    const onlyB = open(`${h.url}?channel=b`, ['upd']);
    await Promise.all([both.opened, onlyB.opened]);
    const e = h.hub.epoch;
    h.hub.publish({ channels: ['a'], data: data('one'), ingress: 'datagram' });
    h.hub.publish({ channels: ['b'], data: data('two'), ingress: 'datagram' });
    const three = h.hub.publish({ channels: ['a', 'b'], data: data('three'), ingress: 'http' });
    // Streams, not frames: `both` got two frames of it.
    expect(three.subscribers).toBe(2);
    h.hub.publish({ channels: ['b', 'a'], data: data('four'), ingress: 'http' });
    h.hub.publish({ channels: ['b'], data: data('line1\nline2'), event: 'upd', ingress: 'grip' });
    expect(await both.count(7)).toEqual([
      { type: 'message', data: 'one', lastEventId: `${e}-1@a` },
      { type: 'message', data: 'two', lastEventId: `${e}-2@b` },
      { type: 'message', data: 'three', lastEventId: `${e}-3@a` },
      { type: 'message', data: 'three', lastEventId: `${e}-3@b` },
      { type: 'message', data: 'four', lastEventId: `${e}-4@b` },
      { type: 'message', data: 'four', lastEventId: `${e}-4@a` },
      { type: 'upd', data: 'line1\nline2', lastEventId: `${e}-5@b` },
    ]);
    expect((await onlyB.count(4)).map((r) => r.lastEventId)).toEqual([
      `${e}-2@b`,
      `${e}-3@b`,
      `${e}-4@b`,
      `${e}-5@b`,
    ]);
  });

  it('replays what a client missed when EventSource reconnects with Last-Event-ID', async () => {
    const h = await start({ retryMs: 10 });
    const client = open(`${h.url}?channel=a`);
    await client.opened;
    h.hub.publish({ channels: ['a'], data: data('1'), ingress: 'internal' });
    h.hub.publish({ channels: ['a'], data: data('2'), ingress: 'internal' });
    await client.count(2);
    const reopened = once(client.es, 'open');
    h.handles[0]?.close(); // the server ends the stream; the client comes back after retry: 10
    h.hub.publish({ channels: ['a'], data: data('3'), ingress: 'internal' });
    h.hub.publish({ channels: ['b'], data: data('other channel'), ingress: 'internal' });
    h.hub.publish({ channels: ['a'], data: data('4'), ingress: 'internal' });
    await reopened;
    h.hub.publish({ channels: ['a'], data: data('5'), ingress: 'internal' });
    const events = await client.count(5);
    expect(events.map((r) => r.data)).toEqual(['1', '2', '3', '4', '5']);
    const e = h.hub.epoch;
    expect(events.map((r) => r.lastEventId)).toEqual([1, 2, 3, 5, 6].map((seq) => `${e}-${seq}@a`));
    expect(h.counts.replayed).toEqual([2]);
    expect(h.counts.lost).toEqual([]);
  });

  it('sends askr:lost (too_old) then what history still holds, then live events', async () => {
    const h = await start({ historySize: 2 });
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) {
      ids.push(
        h.hub.publish({ channels: ['a'], data: data(`${i}`), ingress: 'internal' }).id ?? '',
      );
    }
    const client = open(`${h.url}?channel=a&lastEventId=${ids[0] ?? ''}@a`, ['askr:lost']);
    await client.opened;
    h.hub.publish({ channels: ['a'], data: data('6'), ingress: 'internal' });
    const events = await client.count(4);
    expect(events[0]).toEqual({
      type: 'askr:lost',
      data: JSON.stringify({ reason: 'too_old', lastEventId: `${ids[0] ?? ''}@a` }),
      lastEventId: `${h.hub.epoch}-5`,
    });
    expect(events.slice(1).map((r) => r.data)).toEqual(['4', '5', '6']);
    expect(h.counts.lost).toEqual(['too_old']);
  });

  it('sends askr:lost (epoch) for another instance id, and nothing from history', async () => {
    const h = await start();
    h.hub.publish({ channels: ['a'], data: data('old'), ingress: 'internal' });
    const client = open(`${h.url}?channel=a&lastEventId=zz9other-1@a`, ['askr:lost']);
    await client.opened;
    h.hub.publish({ channels: ['a'], data: data('live'), ingress: 'internal' });
    const events = await client.count(2);
    expect(events[0]?.type).toBe('askr:lost');
    expect(JSON.parse(events[0]?.data ?? '')).toEqual({
      reason: 'epoch',
      lastEventId: 'zz9other-1@a',
    });
    expect(events[1]).toMatchObject({ type: 'message', data: 'live' });
  });

  it('writes retry: on connect and a heartbeat comment on a short interval', async () => {
    const h = await start({ heartbeatIntervalMs: 20, retryMs: 1234 });
    const { res, body } = await rawGet(`${h.url}?channel=a`);
    expect(res.headers['content-type']).toBe('text/event-stream');
    while (body().split(': ping\n\n').length < 3) await once(res, 'data');
    expect(body().startsWith('retry: 1234\n\n: ping\n\n')).toBe(true);
  });

  it('disconnects a consumer that never reads; a fast subscriber gets every event', async () => {
    const h = await start({ subscriberQueueBytes: 256 * 1024 });
    const fast = open(`${h.url}?channel=s`);
    await fast.opened;
    const slow: Socket = connect(h.port, '127.0.0.1');
    cleanups.push(() => {
      slow.destroy();
    });
    slow.write('GET /?channel=s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n');
    slow.pause(); // never read: the kernel buffers fill, then the response's queue grows
    await h.until(() => h.hub.stats().connections === 2);
    const payload = 'x'.repeat(64 * 1024);
    let published = 0;
    // Kernel socket buffers hold a few MB on loopback; 400 x 64 KiB is far beyond that.
    while (h.counts.slow === 0 && published < 400) {
      const result = h.hub.publish({
        channels: ['s'],
        data: data(`${published}:${payload}`),
        ingress: 'internal',
      });
      published++;
      expect(result.subscribers).toBeGreaterThanOrEqual(1);
      await fast.count(published);
    }
    expect(h.counts.slow).toBe(1);
    expect(h.hub.stats().connections).toBe(1);
    for (let i = 0; i < 3; i++) {
      h.hub.publish({
        channels: ['s'],
        data: data(`${published}:${payload}`),
        ingress: 'internal',
      });
      published++;
    }
    const events = await fast.count(published);
    expect(events.map((r) => Number(r.data.slice(0, r.data.indexOf(':'))))).toEqual(
      Array.from({ length: published }, (_, i) => i),
    );
  });

  it('a client that stalls, then reads, gets every event in order (frames queued in the hub go out on drain)', async () => {
    const h = await start({ subscriberQueueBytes: 16 << 20 });
    const req = get(`${h.url}?channel=q`);
    cleanups.push(() => {
      req.destroy();
    });
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    res.pause(); // stops reading: kernel buffers fill, then the response's, then the hub queues
    await h.until(() => h.hub.stats().connections === 1);
    const payload = 'y'.repeat(1000);
    let published = 0;
    const burst = (n: number): void => {
      for (let k = 0; k < n; k++) {
        h.hub.publish({
          channels: ['q'],
          data: data(`${published++} ${payload}`),
          ingress: 'internal',
        });
      }
    };
    // Loopback buffers take a few MiB; 100 events (~100 KB) per turn of the event loop.
    while (h.hub.queuedBytes() === 0 && published < 30_000) {
      burst(100);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(h.hub.queuedBytes()).toBeGreaterThan(0);
    burst(100); // behind the queued ones
    expect(h.counts.slow).toBe(0);
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (text += chunk));
    res.resume();
    while (!text.includes(`data: ${published - 1} `)) await once(res, 'data');
    const seen = [...text.matchAll(/^data: (\d+) /gm)].map((m) => Number(m[1]));
    expect(seen).toEqual(Array.from({ length: published }, (_, i) => i));
    expect(h.hub.queuedBytes()).toBe(0);
    expect(h.hub.stats().connections).toBe(1);
  });

  it('refuses streams over the per-IP limit, and admits again when one leaves', async () => {
    const h = await start({ maxConnectionsPerIp: 2 });
    const first = open(`${h.url}?channel=a`);
    const second = open(`${h.url}?channel=a`);
    await Promise.all([first.opened, second.opened]);
    const refused = await rawGet(`${h.url}?channel=a`);
    expect(refused.res.statusCode).toBe(429);
    await once(refused.res, 'end');
    expect(refused.body()).toBe('too many streams from 127.0.0.1: 2 (sse.max_connections_per_ip)');
    first.es.close();
    await h.until(() => h.hub.stats().connections === 1);
    const third = await rawGet(`${h.url}?channel=a`);
    expect(third.res.statusCode).toBe(200);
  });

  it('refuses streams over the total limit', async () => {
    const h = await start({ maxConnections: 2 });
    await Promise.all([open(`${h.url}?channel=a`).opened, open(`${h.url}?channel=b`).opened]);
    const refused = await rawGet(`${h.url}?channel=c`);
    expect(refused.res.statusCode).toBe(429);
    await once(refused.res, 'end');
    expect(refused.body()).toBe('too many streams: 2 (sse.max_connections)');
  });

  it('a close publish delivers its event, then ends every stream of the channel', async () => {
    const h = await start();
    const one = await rawGet(`${h.url}?channel=c`);
    const two = await rawGet(`${h.url}?channel=c&channel=d`);
    const other = await rawGet(`${h.url}?channel=d`);
    await h.until(() => h.hub.stats().connections === 3);
    const ended = Promise.all([once(one.res, 'end'), once(two.res, 'end')]);
    const result = h.hub.publish({
      channels: ['c'],
      data: data('bye'),
      close: true,
      ingress: 'grip',
    });
    expect(result).toMatchObject({ subscribers: 2, closed: 2 });
    await ended;
    expect(one.body()).toBe(`retry: 20\n\nid: ${result.id ?? ''}@c\ndata: bye\n\n`);
    expect(two.body()).toContain('data: bye\n\n');
    expect(h.hub.stats().connections).toBe(1);
    expect(other.body()).toBe('retry: 20\n\n');
    // Empty data: nothing to send, only the close.
    const empty = h.hub.publish({ channels: ['d'], data: data(''), close: true, ingress: 'grip' });
    expect(empty).toEqual({ id: null, subscribers: 0, closed: 1 });
    await once(other.res, 'end');
    expect(h.hub.stats()).toMatchObject({ connections: 0 });
  });

  it('removes the subscriber (and its empty channel) as soon as the client goes away', async () => {
    const h = await start();
    const client = open(`${h.url}?channel=gone&channel=gone2`);
    await client.opened;
    expect(h.hub.stats()).toEqual({
      connections: 1,
      channels: 2,
      byKind: { hold: 0, events: 1, mercure: 0 },
    });
    client.es.close();
    await h.until(() => h.hub.stats().connections === 0);
    expect(h.hub.stats()).toEqual({
      connections: 0,
      channels: 0,
      byKind: { hold: 0, events: 0, mercure: 0 },
    });
    expect(
      h.hub.publish({ channels: ['gone'], data: data('x'), ingress: 'internal' }).subscribers,
    ).toBe(0);
  });

  it('drops a publish whose publisherId is still in history (idempotent retry)', async () => {
    const h = await start();
    const client = open(`${h.url}?channel=a&channel=b`);
    await client.opened;
    const first = h.hub.publish({
      channels: ['a', 'b'],
      data: data('once'),
      publisherId: 'job-1',
      ingress: 'datagram',
    });
    expect(first.id).not.toBeNull();
    const retry = h.hub.publish({
      channels: ['b'],
      data: data('once'),
      publisherId: 'job-1',
      ingress: 'datagram',
    });
    expect(retry).toEqual({ id: null, subscribers: 0, closed: 0 });
    h.hub.publish({
      channels: ['a'],
      data: data('next'),
      publisherId: 'job-2',
      ingress: 'datagram',
    });
    expect((await client.count(3)).map((r) => `${r.data}@${r.lastEventId.split('@')[1]}`)).toEqual([
      'once@a',
      'once@b',
      'next@a',
    ]);
  });

  it('delivers 10,000 publishes in order', async () => {
    const h = await start({ subscriberQueueBytes: 64 << 20, historySize: 10 });
    const client = open(`${h.url}?channel=a&channel=b`);
    await client.opened;
    for (let i = 0; i < 10_000; i++) {
      h.hub.publish({
        channels: [i % 2 === 0 ? 'a' : 'b'],
        data: data(String(i)),
        ingress: 'datagram',
      });
    }
    const events = await client.count(10_000);
    expect(events.every((r, i) => r.data === String(i))).toBe(true);
    expect(
      events.every(
        (r, i) => r.lastEventId === `${h.hub.epoch}-${i + 1}@${i % 2 === 0 ? 'a' : 'b'}`,
      ),
    ).toBe(true);
  });
});
