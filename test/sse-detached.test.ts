/**
 * Held streams whose connection the sidecar took over from node:http once the head was out
 * (issue 13: a held stream keeps its socket and its queue, not node's parser, request and response),
 * driven from outside with raw TCP clients that decode the chunked framing byte by byte. They must
 * behave as streams did before: events in order, heartbeats, the client's leaving seen at once and
 * counted (499, metrics, in-flight), a slow client cut at the queue bound, every stream ended on
 * shutdown (and a stalled one destroyed at the shutdown timeout). A recurrence of a take-over bug
 * looks like: a stream that never ends in the access log, in-flight requests that never drain,
 * frames with a broken chunk framing, or a shutdown that hangs on a stalled client.
 * The sign that a stream was taken over: after its last chunk the connection closes (node:http
 * would keep it open for another request).
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

const TOKEN = 'detach-token';

/**
 * A raw client: the response head, then the body decoded from its chunked framing (a framing
 * error fails the test), and whether the last chunk came before the connection closed.
 */
interface RawStream {
  socket: Socket;
  head(): string;
  /** The decoded body so far. */
  body(): string;
  lastChunk(): boolean;
  closed: Promise<void>;
  /** Resolves once the decoded body satisfies `check`; rejects if the connection closes first. */
  waitFor(check: (body: string) => boolean, what: string): Promise<string>;
}

function openRaw(port: number, path: string, version = '1.1'): RawStream {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/${version}\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n`);
  let raw: Buffer = Buffer.alloc(0);
  let head: string | null = null;
  let chunked = false;
  let body = '';
  let last = false;
  let framingError: Error | null = null;
  const wakers: Array<() => void> = [];
  const decode = (): void => {
    if (head === null) {
      const end = raw.indexOf('\r\n\r\n');
      if (end === -1) return;
      head = raw.subarray(0, end).toString('latin1');
      chunked = /\r\ntransfer-encoding: chunked/i.test(head);
      raw = raw.subarray(end + 4);
    }
    if (!chunked) {
      body += raw.toString('utf8');
      raw = Buffer.alloc(0);
      return;
    }
    for (;;) {
      const lineEnd = raw.indexOf('\r\n');
      if (lineEnd === -1) return;
      const sizeLine = raw.subarray(0, lineEnd).toString('latin1');
      if (!/^[0-9a-f]+$/.test(sizeLine)) {
        framingError = new Error(`bad chunk size line: ${JSON.stringify(sizeLine)}`);
        return;
      }
      const size = Number.parseInt(sizeLine, 16);
      if (raw.length < lineEnd + 2 + size + 2) return;
      if (raw.subarray(lineEnd + 2 + size, lineEnd + 4 + size).toString('latin1') !== '\r\n') {
        framingError = new Error('a chunk does not end with CRLF');
        return;
      }
      if (size === 0) last = true;
      body += raw.subarray(lineEnd + 2, lineEnd + 2 + size).toString('utf8');
      raw = raw.subarray(lineEnd + 4 + size);
    }
  };
  socket.on('data', (chunk: Buffer) => {
    raw = raw.length === 0 ? chunk : Buffer.concat([raw, chunk]);
    decode();
    for (const wake of wakers.splice(0)) wake();
  });
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => undefined);
  return {
    socket,
    head: () => head ?? '',
    body: () => body,
    lastChunk: () => last,
    closed,
    async waitFor(check, what) {
      while (!check(body)) {
        if (framingError !== null) throw framingError;
        if (socket.destroyed) throw new Error(`closed before ${what}: ${JSON.stringify(body)}`);
        await Promise.race([new Promise<void>((wake) => wakers.push(wake)), closed]);
      }
      if (framingError !== null) throw framingError;
      return body;
    },
  };
}

/** The numbers of the body's `data: n<i>` lines, in order. */
function numbered(body: string): number[] {
  return [...body.matchAll(/^data: n(\d+)$/gm)].map((m) => Number(m[1]));
}

async function publish(
  sidecar: TestSidecar,
  channel: string,
  data: string,
  close = false,
): Promise<void> {
  const res = await request(`${sidecar.url}/askr/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data, ...(close ? { close: true } : {}) }),
  });
  await res.body.text();
  expect(res.statusCode).toBe(202);
}

/** Sum of a metric's values whose labels include `labels`. */
async function metric(
  sidecar: TestSidecar,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const values = (await sidecar.registry.getSingleMetric(name)?.get())?.values ?? [];
  let sum = 0;
  for (const v of values) {
    if (Object.entries(labels).every(([k, want]) => v.labels[k] === want)) sum += v.value;
  }
  return sum;
}

function accessLine(sidecar: TestSidecar, pathPart: string): Record<string, unknown> | undefined {
  return sidecar.logs.find((l) => l['msg'] === 'request' && String(l['path']).includes(pathPart));
}

let s: TestSidecar;
beforeAll(async () => {
  s = await startTestSidecar({
    'sse.publish_token': TOKEN,
    'sse.heartbeat_interval': '200ms',
    'log.access_log': 'true',
  });
});
afterAll(async () => {
  await s.close();
});

describe('a held stream taken over from node:http', () => {
  it('delivers events in order in valid chunks, with heartbeats', async () => {
    const st = openRaw(s.port, '/askr/events?channel=order');
    await st.waitFor((b) => b.includes('event: askr:connected'), 'askr:connected');
    expect(st.head()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(st.head()).toMatch(/\r\ncontent-type: text\/event-stream/i);
    for (let i = 0; i < 300; i++) {
      s.hub.publish({ channels: ['order'], data: Buffer.from(`n${i}`), ingress: 'internal' });
      // Some in one event-loop turn (one write), some apart.
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await st.waitFor((b) => b.includes('data: n299\n'), 'the last event');
    expect(numbered(st.body())).toEqual(Array.from({ length: 300 }, (_, i) => i));
    const pings = (b: string): number => b.split(': ping\n\n').length - 1;
    const before = pings(st.body());
    await st.waitFor((b) => pings(b) >= before + 2, 'two heartbeats');
    st.socket.destroy();
    await until(() => s.hub.stats().connections === 0, 5000, 'the stream removed');
  });

  it('the client leaving removes the stream at once: 499 in the access log and the metrics', async () => {
    const connections = s.hub.stats().connections;
    const inFlight = s.http.inFlight();
    const cut = await metric(s, 'askr_http_requests_total', { kind: 'sse', status_class: '4xx' });
    const st = openRaw(s.port, '/askr/events?channel=leaving&socket_id=1.499');
    await st.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
    expect(s.hub.stats().connections).toBe(connections + 1);
    expect(s.http.inFlight()).toBe(inFlight + 1);
    st.socket.destroy();
    await until(() => s.hub.stats().connections === connections, 5000, 'the stream removed');
    await until(() => s.http.inFlight() === inFlight, 5000, 'the request ended');
    const line = accessLine(s, 'socket_id=1.499');
    expect(line).toMatchObject({ status: 499, kind: 'sse', method: 'GET' });
    expect(line?.['bytes']).toBeGreaterThan(100);
    expect(await metric(s, 'askr_http_requests_total', { kind: 'sse', status_class: '4xx' })).toBe(
      cut + 1,
    );
  });

  it('a close publish ends it: the last chunk, then the connection closes; logged 200', async () => {
    const st = openRaw(s.port, '/askr/events?channel=closing&socket_id=1.200');
    await st.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
    await publish(s, 'closing', 'bye', true);
    await st.closed;
    expect(st.lastChunk()).toBe(true);
    expect(st.body()).toMatch(/data: bye\n\n$/);
    await until(() => accessLine(s, 'socket_id=1.200') !== undefined, 5000, 'the access log');
    expect(accessLine(s, 'socket_id=1.200')).toMatchObject({ status: 200, kind: 'sse' });
  });

  it('a PHP hold is taken over too: its body first, live events, ended by a close publish', async () => {
    const st = openRaw(s.port, '/hold?channels=held-raw');
    await st.waitFor((b) => b.includes('event: init'), "PHP's body");
    expect(s.pool.stats().busy).toBe(0);
    await publish(s, 'held-raw', 'live');
    await st.waitFor((b) => b.includes('data: live'), 'the live event');
    await publish(s, 'held-raw', '', true);
    await st.closed;
    expect(st.lastChunk()).toBe(true);
  });

  it('an HTTP/1.0 client gets the raw frames, and the connection closes at the end', async () => {
    const st = openRaw(s.port, '/askr/events?channel=old-client', '1.0');
    await st.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
    expect(st.head()).not.toMatch(/transfer-encoding/i);
    await publish(s, 'old-client', 'n1');
    await st.waitFor((b) => numbered(b).length === 1, 'the event');
    await publish(s, 'old-client', 'n2', true);
    await st.closed;
    expect(numbered(st.body())).toEqual([1, 2]);
  });

  it('a client over sse.subscriber_queue_size is cut and counted; a reading one gets everything', async () => {
    const small = await startTestSidecar({
      'sse.subscriber_queue_size': '256KiB',
      'sse.publish_token': TOKEN,
    });
    try {
      const fast = openRaw(small.port, '/askr/events?channel=flood');
      const slow = openRaw(small.port, '/askr/events?channel=flood');
      await fast.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
      await slow.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
      slow.socket.pause(); // reads nothing more: the kernel buffers fill, then the hub's queue
      const dropped = await metric(small, 'askr_sse_slow_consumer_disconnects_total');
      const payload = 'x'.repeat(8 * 1024);
      let sent = 0;
      while (small.hub.stats().connections === 2) {
        if (sent === 8000) throw new Error('the slow client was never cut');
        small.hub.publish({
          channels: ['flood'],
          data: Buffer.from(`n${sent}\ndata: ${payload}`),
          ingress: 'internal',
        });
        sent++;
        // A publisher that paces itself a little: a reading client keeps up, a stalled one cannot.
        if (sent % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      expect(await metric(small, 'askr_sse_slow_consumer_disconnects_total')).toBe(dropped + 1);
      // A paused socket sees no close: read what the kernel kept, then the close.
      slow.socket.resume();
      await slow.closed;
      expect(numbered(slow.body()).length).toBeLessThan(sent);
      small.hub.publish({ channels: ['flood'], data: Buffer.from('end'), ingress: 'internal' });
      await fast.waitFor((b) => b.endsWith('data: end\n\n'), 'every event');
      expect(numbered(fast.body())).toEqual(Array.from({ length: sent }, (_, i) => i));
      fast.socket.destroy();
    } finally {
      await small.close();
    }
  });

  it('shutdown ends every stream with retry:, the last chunk and a close, without waiting', async () => {
    const other = await startTestSidecar({ 'sse.publish_token': TOKEN });
    const streams = [
      openRaw(other.port, '/askr/events?channel=a'),
      openRaw(other.port, '/askr/events?channel=b'),
      openRaw(other.port, '/hold?channels=c'),
    ];
    for (const st of streams) await st.waitFor((b) => b.includes('\n\n'), 'the first frame');
    await until(() => other.hub.stats().connections === 3, 5000, 'three streams');
    const started = Date.now();
    await other.close();
    for (const st of streams) {
      await st.closed;
      expect(st.lastChunk()).toBe(true);
      expect(st.body()).toMatch(/retry: \d+\n\n$/);
    }
    expect(other.logs.some((l) => String(l['msg']).startsWith('shutdown timeout'))).toBe(false);
    expect(other.http.inFlight()).toBe(0);
    // Far under server.shutdown_timeout (30 s): nothing waited for the timeout.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a stalled client at shutdown is destroyed at server.shutdown_timeout', async () => {
    const other = await startTestSidecar({
      'sse.publish_token': TOKEN,
      'sse.subscriber_queue_size': '64MiB',
      'server.shutdown_timeout': '300ms',
    });
    const st = openRaw(other.port, '/askr/events?channel=stalled');
    await st.waitFor((b) => b.includes('askr:connected'), 'askr:connected');
    st.socket.pause();
    // More than the loopback buffers take: the stream's end cannot be flushed.
    const payload = Buffer.alloc(1024 * 1024, 'x');
    for (let i = 0; i < 32; i++) {
      other.hub.publish({ channels: ['stalled'], data: payload, ingress: 'internal' });
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Still held (under its 64 MiB bound), with bytes the client has not taken.
    expect(other.hub.stats().connections).toBe(1);
    await other.close();
    expect(other.logs.some((l) => String(l['msg']).startsWith('shutdown timeout'))).toBe(true);
    await until(() => other.http.inFlight() === 0, 5000, 'the stalled request ended');
    // A paused socket sees no close: read what the kernel kept, then the close.
    st.socket.resume();
    await st.closed;
    expect(st.lastChunk()).toBe(false);
  });
});
