/**
 * The hub under floods, end to end on a real sidecar and php-fpm (regression tests):
 * - admission is atomic. 200 simultaneous connects to private channels whose auth route sleeps
 *   200 ms, with sse.max_connections = 50: exactly 50 held, 150 × 429. A recurrence holds all 200
 *   (the limit checked before the auth, the stream added after it). The same for
 *   sse.max_connections_per_ip, and for holds and the events endpoint competing for one limit.
 * - slow-subscriber memory is what sse.subscriber_queue_size says. 100 clients that never read and
 *   a flood of 200,000 small datagrams: every one of them is dropped and counted, the fast ones
 *   get every event in order, and RSS (sampled after a full gc: what is held, not garbage) stays
 *   under 300 MB. A recurrence goes to ~0.5 GB here (each stalled stream held 9-16× its bound in
 *   per-write bookkeeping of the chunked response; without the gc, 0.6-1.7 GB).
 */
import { once } from 'node:events';
import { get, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DgramSocket } from 'node-unix-socket';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeDatagram } from '../src/broadcast/datagram-codec.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

/** The fixture front controller: a /broadcasting/auth that sleeps 200 ms, and /hold. */
const APP = { 'server.index': 'sse-protect-app.php', 'log.access_log': 'false' };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function sidecar(overrides: Record<string, unknown>): Promise<TestSidecar> {
  const s = await startTestSidecar({ ...APP, ...overrides });
  cleanups.push(() => s.close());
  return s;
}

interface Answer {
  status: number;
  retryAfter: string | undefined;
  /** The whole body of a refusal; '' for a held stream (left open, read and discarded). */
  body: string;
}

/** A GET on its own connection. A 200 stays open (drained) until the test ends. */
function fetchStream(s: TestSidecar, path: string, headers: Record<string, string> = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const req = get(`${s.url}${path}`, { agent: false, headers }, (res: IncomingMessage) => {
      const retryAfter = res.headers['retry-after'];
      if (res.statusCode === 200) {
        res.resume();
        resolve({ status: 200, retryAfter, body: '' });
        return;
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter, body }));
    });
    req.on('error', reject);
    cleanups.push(() => {
      req.destroy();
    });
  });
}

function tally(answers: readonly Answer[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const a of answers) out[a.status] = (out[a.status] ?? 0) + 1;
  return out;
}

async function counter(s: TestSidecar, name: string, labels: Record<string, string> = {}) {
  const metric = s.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return match?.value ?? 0;
}

/** `global.gc` when the process has it, else the V8 flag turned on at run time. */
function gcFunction(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** An events-endpoint client that reads everything and checks that the stream opens with
 * askr:connected, then `data: <n> …` arrives 0, 1, 2, …
 * Bytes are scanned in place (no strings): the test process's own garbage stays small. */
function fastReader(s: TestSidecar, channel: string) {
  const state = { next: 0, errors: [] as string[], open: false, connected: false };
  const DATA = Buffer.from('\ndata: ');
  const CONNECTED = Buffer.from('\nevent: askr:connected');
  const req = get(
    `${s.url}/askr/events?channel=${channel}`,
    { agent: false },
    (res: IncomingMessage) => {
      state.open = res.statusCode === 200;
      let rest: Buffer = Buffer.alloc(0);
      res.on('data', (chunk: Buffer) => {
        const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
        let pos = 0;
        for (let at = buf.indexOf(DATA, pos); at !== -1; at = buf.indexOf(DATA, pos)) {
          let i = at + DATA.length;
          if (at >= CONNECTED.length && buf.subarray(at - CONNECTED.length, at).equals(CONNECTED)) {
            // The stream's askr:connected frame (its socket id), not an event: skipped, once.
            const end = buf.indexOf(0x0a, i);
            if (end === -1) break; // the frame is cut: wait for more
            if ((state.connected || state.next !== 0) && state.errors.length < 5) {
              state.errors.push(`askr:connected after event ${state.next - 1}`);
            }
            state.connected = true;
            pos = end;
            continue;
          }
          if (!state.connected && state.errors.length < 5) {
            state.errors.push(`event ${state.next} before askr:connected`);
          }
          let n = 0;
          while (i < buf.length && buf[i] !== 0x20) n = n * 10 + (buf[i++] ?? 0) - 0x30;
          if (i === buf.length) break; // the number is cut: wait for more
          if (n !== state.next && state.errors.length < 5) {
            state.errors.push(`expected ${state.next}, got ${n}`);
          }
          state.next = n + 1;
          pos = i;
        }
        rest = buf.subarray(pos);
      });
      res.on('close', () => (state.open = false));
    },
  );
  cleanups.push(() => {
    req.destroy();
  });
  return state;
}

describe('slow subscribers cost what sse.subscriber_queue_size says', () => {
  it('100 stalled clients and a 200,000-datagram flood: all dropped and counted, fast ones get everything in order, RSS < 300 MB', async () => {
    const gc = gcFunction();
    const socketPath = join(await phpTempDir('askr-protect-'), 'askr.sock');
    const s = await sidecar({
      'sse.subscriber_queue_size': '1MiB',
      'broadcast.socket': socketPath,
    });
    const publisher = new DgramSocket();
    cleanups.push(() => publisher.close());
    const send = (datagram: Buffer): Promise<void> =>
      new Promise((resolve, reject) => {
        publisher.sendTo(datagram, 0, datagram.length, socketPath, (err) => {
          if (err === undefined) resolve();
          else reject(err);
        });
      });
    const fast = Array.from({ length: 4 }, () => fastReader(s, 'flood'));
    for (let i = 0; i < 100; i++) {
      const socket = connect(s.port, '127.0.0.1');
      cleanups.push(() => {
        socket.destroy();
      });
      await once(socket, 'connect');
      socket.write('GET /askr/events?channel=flood HTTP/1.1\r\nHost: x\r\n\r\n');
      socket.pause(); // never reads: the kernel buffers fill (a few MiB), then the sidecar's
    }
    await until(() => s.hub.stats().connections === 104, 10_000, '104 streams');
    gc();
    const rssBefore = process.memoryUsage().rss;

    // Datagrams as PHP sends them (the real ingress), 100 in flight at a time; the test's
    // publisher keeps the fast readers within ~5,000 events (the hub itself never waits).
    const TOTAL = 200_000;
    const WINDOW = 100;
    const pad = 'x'.repeat(40);
    let rssMax = 0;
    for (let n = 0; n < TOTAL; n += WINDOW) {
      await Promise.all(
        Array.from({ length: WINDOW }, (_, j) =>
          send(encodeDatagram({ channels: 'flood', data: `${n + j} ${pad}` })),
        ),
      );
      if ((n + WINDOW) % 1000 === 0) {
        const target = n - 5000;
        await until(() => fast.every((f) => f.next >= target), 30_000, 'fast readers');
      }
      if ((n + WINDOW) % 5000 === 0) {
        gc(); // what is held, not garbage waiting for the collector
        rssMax = Math.max(rssMax, process.memoryUsage().rss);
      }
    }
    await until(() => fast.every((f) => f.next === TOTAL), 30_000, 'every event at fast readers');
    await until(() => s.hub.stats().connections === 4, 10_000, 'stalled streams dropped');
    gc();
    await new Promise((resolve) => setTimeout(resolve, 200));
    gc();
    const rssAfter = process.memoryUsage().rss;
    const mb = (bytes: number): number => Math.round(bytes / 2 ** 20);
    console.log(
      `RSS before ${mb(rssBefore)} MB, max during the flood ${mb(rssMax)} MB, after ${mb(rssAfter)} MB`,
    );

    expect(fast.map((f) => f.errors)).toEqual([[], [], [], []]);
    expect(fast.every((f) => f.open)).toBe(true);
    expect(fast.every((f) => f.connected)).toBe(true);
    expect(await counter(s, 'askr_sse_slow_consumer_disconnects_total')).toBe(100);
    expect(s.hub.queuedBytes()).toBe(0); // the dropped streams' queues were released at once
    expect(rssMax).toBeLessThan(300 * 2 ** 20);
    expect(rssAfter).toBeLessThan(300 * 2 ** 20);
  });
});

describe('admission is atomic (limits checked where the stream is added)', () => {
  it('200 simultaneous private connects, auth 200 ms, max_connections 50: 50 held, 150 × 429', async () => {
    const s = await sidecar({ 'sse.max_connections': '50' });
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        fetchStream(s, `/askr/events?channel=private-protect.${i}`),
      ),
    );
    expect(tally(answers)).toEqual({ 200: 50, 429: 150 });
    for (const refused of answers.filter((a) => a.status === 429)) {
      expect(refused.retryAfter).toBe('5');
      expect(refused.body).toContain('too many streams: 50 (sse.max_connections)');
    }
    expect(s.hub.stats().connections).toBe(50);
    expect(await counter(s, 'askr_rejected_requests_total', { reason: 'stream_limit' })).toBe(150);
  });

  it('per client address: 4 addresses × 50 simultaneous connects, max_connections_per_ip 20', async () => {
    const s = await sidecar({
      'sse.max_connections_per_ip': '20',
      'server.trusted_proxies': '127.0.0.1',
    });
    const ips = ['10.9.0.1', '10.9.0.2', '10.9.0.3', '10.9.0.4'];
    const answers = await Promise.all(
      ips.flatMap((ip) =>
        Array.from({ length: 50 }, (_, i) =>
          fetchStream(s, `/askr/events?channel=private-protect.${i}`, {
            'x-forwarded-for': ip,
          }).then((a) => ({ ...a, ip })),
        ),
      ),
    );
    for (const ip of ips) {
      const mine = answers.filter((a) => a.ip === ip);
      expect(tally(mine)).toEqual({ 200: 20, 429: 30 });
      for (const refused of mine.filter((a) => a.status === 429)) {
        expect(refused.body).toContain(
          `too many streams from ${ip}: 20 (sse.max_connections_per_ip)`,
        );
      }
    }
    expect(s.hub.stats().connections).toBe(80);
  });

  it('holds and the events endpoint share the limit: 40 + 40 at once, max_connections 50', async () => {
    const s = await sidecar({ 'sse.max_connections': '50' });
    const answers = await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        i % 2 === 0
          ? fetchStream(s, `/askr/events?channel=private-protect.${i}`)
          : fetchStream(s, `/hold?channels=protect-${i}`),
      ),
    );
    expect(tally(answers)).toEqual({ 200: 50, 429: 30 });
    expect(answers.filter((a) => a.status === 429).every((a) => a.retryAfter === '5')).toBe(true);
    expect(s.hub.stats().connections).toBe(50);
    expect(await counter(s, 'askr_rejected_requests_total', { reason: 'stream_limit' })).toBe(30);
  });
});

describe('server.max_connections', () => {
  it('refuses connections past the limit, counts them and logs once', async () => {
    const s = await sidecar({ 'server.max_connections': '2' });
    const open = await Promise.all(
      [0, 1].map(async () => {
        const socket = connect(s.port, '127.0.0.1');
        await once(socket, 'connect');
        // An answer proves the server took this connection (not only the kernel's backlog).
        socket.write('GET /no-such-file HTTP/1.1\r\nHost: x\r\n\r\n');
        await once(socket, 'data');
        return socket;
      }),
    );
    // Past the limit the kernel accepts, then Node closes at once: the client sees the close.
    const refused = await Promise.all(
      [0, 1, 2].map(async () => {
        const socket = connect(s.port, '127.0.0.1');
        socket.on('error', () => undefined);
        await once(socket, 'close');
        return socket;
      }),
    );
    expect(refused).toHaveLength(3);
    expect(await counter(s, 'askr_rejected_requests_total', { reason: 'max_connections' })).toBe(3);
    expect(s.logs.filter((l) => String(l['msg']).startsWith('connection refused'))).toHaveLength(1);
    for (const socket of open) socket.destroy();
  });
});
