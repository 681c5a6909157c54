/**
 * Streams that come and go give back everything they took (issue 13, "memory that comes back"):
 * rounds of N raw SSE connections held together on a real sidecar, then ended by the client, by
 * the server (a publish with `close`), through the Mercure door, or by clients gone before their
 * response head. After every round the hub holds no stream, queue or channel, the server no
 * request, the process's open fds are what they were before the first round, and every place is
 * back: the next round fills sse.max_connections_per_ip = N again, and one more is refused.
 * A recurrence looks like a count that stays above zero after a round (streams, channels, queued
 * bytes, in-flight requests, fds), or a 429 in a later round (a place never given back).
 */
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import { until } from './helpers/wait.ts';

/** Streams per round: the per-IP limit, so a single place not given back shows as a 429. */
const N = 40;
const ROUNDS = 3;

interface Stream {
  socket: Socket;
  /** Resolves when the server ended the response (its last chunk) or the connection closed. */
  ended: Promise<void>;
}

/**
 * Opens a raw connection to `path`; resolves with the stream once its head and first frame came,
 * or with the status line of a refusal.
 */
function open(port: number, path: string): Promise<Stream | string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let seen = '';
    let settled = false;
    let onEnded = (): void => {};
    const ended = new Promise<void>((r) => {
      onEnded = r;
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n`);
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      const head = seen.indexOf('\r\n\r\n');
      if (!settled && head !== -1) {
        if (!seen.startsWith('HTTP/1.1 200')) {
          settled = true;
          socket.destroy();
          resolve(seen.slice(0, seen.indexOf('\r\n')));
        } else if (seen.includes('\n\n', head + 4)) {
          settled = true;
          resolve({ socket, ended });
        }
      }
      if (seen.endsWith('\r\n0\r\n\r\n')) onEnded();
    });
    socket.once('close', () => {
      onEnded();
      if (!settled) reject(new Error(`closed before the first frame: ${JSON.stringify(seen)}`));
    });
    socket.on('error', () => undefined); // 'close' follows
  });
}

async function openAll(port: number, path: string, count: number): Promise<Stream[]> {
  const answers = await Promise.all(Array.from({ length: count }, () => open(port, path)));
  const refused = answers.filter((a): a is string => typeof a === 'string');
  expect(refused, 'every stream of the round admitted').toEqual([]);
  return answers.filter((a): a is Stream => typeof a !== 'string');
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

let s: TestSidecar;
let port = 0;
/** Open fds of this process (the sidecar runs in it) before any stream. */
let fdsBefore = 0;

beforeAll(async () => {
  s = await startTestSidecar({
    'sse.max_connections_per_ip': N,
    'sse.max_connections': N,
    // No history: a channel nobody listens to is then forgotten, so the channel count must
    // come back to zero too.
    'sse.history_size': 0,
    'mercure.enabled': true,
    'mercure.anonymous': true,
    'log.access_log': false,
  });
  port = Number(new URL(s.url).port);
  fdsBefore = openFds();
});

afterAll(async () => {
  await s.close();
});

/** Everything a round took is back: hub, server, fds; then the next round may run. */
async function expectReleased(what: string): Promise<void> {
  await until(
    () => s.hub.stats().connections === 0 && s.http.inFlight() === 0 && openFds() <= fdsBefore,
    10_000,
    `${what}: streams, requests and fds released (now ${s.hub.stats().connections} streams, ` +
      `${s.http.inFlight()} requests, ${openFds()} fds; ${fdsBefore} before)`,
  );
  expect(s.hub.stats()).toEqual({
    connections: 0,
    channels: 0,
    byKind: { hold: 0, events: 0, mercure: 0 },
  });
  expect(s.hub.queuedBytes()).toBe(0);
  expect(openFds()).toBe(fdsBefore);
}

function publish(channel: string, data: string, close = false): void {
  s.hub.publish({
    channels: [channel],
    data: Buffer.from(data),
    ingress: 'internal',
    ...(close ? { close: true } : {}),
  });
}

describe('SSE streams opened and closed in rounds give everything back', () => {
  it('streams the client closes, with events published while they are held', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const streams = await openAll(port, '/askr/events?channel=churn', N);
      for (let i = 0; i < 5; i++) publish('churn', `event ${i}`);
      for (const st of streams) st.socket.destroy();
      await expectReleased(`client close, round ${round}`);
    }
  });

  it('streams the server ends (a publish with close), then the client closes', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const streams = await openAll(port, '/askr/events?channel=churn', N);
      publish('churn', 'last one', true);
      await Promise.all(streams.map((st) => st.ended));
      expect(s.hub.stats().connections).toBe(0);
      for (const st of streams) st.socket.destroy();
      await expectReleased(`server close, round ${round}`);
    }
  });

  it('Mercure streams the client closes', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const streams = await openAll(port, '/.well-known/mercure?match=churn', N);
      publish('churn', 'to mercure');
      for (const st of streams) st.socket.destroy();
      await expectReleased(`Mercure, round ${round}`);
    }
  });

  it('clients gone before their response head, then a full round', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const gone = Array.from({ length: N }, () => {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.write('GET /askr/events?channel=churn HTTP/1.1\r\nHost: t\r\n\r\n', () =>
          socket.destroy(),
        );
        return socket;
      });
      await until(() => gone.every((g) => g.destroyed), 5000, 'the clients gone');
      await expectReleased(`clients gone early, round ${round}`);
    }
    const streams = await openAll(port, '/askr/events?channel=churn', N);
    expect(await open(port, '/askr/events?channel=churn')).toMatch(/^HTTP\/1\.1 429/);
    for (const st of streams) st.socket.destroy();
    await expectReleased('the full round');
  });
});
