// startStream on a real node:http server whose responses can be taken over, with a real hub: the
// stream is subscribed on the taken-over connection, and a subscribe that throws after the
// take-over cuts that connection (the response, detached from it, could not: the client would hang
// on a stream nobody writes, and the request would never end).
import { once } from 'node:events';
import { Server, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { DetachedResponse, StreamableResponse } from '../http/detached-response.ts';
import type { RequestContext } from '../http/request-context.ts';
import { Hub, type SseSink } from './hub.ts';
import { SSE_HEADERS, startStream } from './stream-response.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

class TestResponse extends StreamableResponse {
  onTakenOver(): void {}
}

function makeHub(): Hub {
  const hub = new Hub({
    historySize: 10,
    historyMaxAgeMs: 0,
    subscriberQueueBytes: 1 << 20,
    heartbeatIntervalMs: 0,
    maxLifetimeMs: 0,
    idleTimeoutMs: 0,
    retryMs: 1000,
    maxConnections: 10,
    maxConnectionsPerIp: 10,
    sweepIntervalMs: 0,
    logger: pino({ level: 'silent' }),
  });
  cleanups.push(() => {
    hub.closeAll(0);
  });
  return hub;
}

/** Serves one stream of `channel`; resolves with what startStream returned or threw. */
async function serve(
  channel: string,
): Promise<{ outcome: Promise<SseSink | Error>; received: () => string; closed: Promise<void> }> {
  const hub = makeHub();
  let settle: (value: SseSink | Error) => void = () => undefined;
  const outcome = new Promise<SseSink | Error>((resolve) => (settle = resolve));
  const server = new Server<typeof IncomingMessage, typeof TestResponse>(
    { ServerResponse: TestResponse },
    (req, res) => {
      // After the request was read, as the sidecar's handlers run.
      setImmediate(() => {
        const ctx = { req, res } as unknown as RequestContext;
        try {
          settle(
            startStream(ctx, 200, SSE_HEADERS, hub, {
              channels: [channel],
              clientIp: '127.0.0.1',
              kind: 'events',
            }),
          );
        } catch (err) {
          settle(err as Error);
        }
      });
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  cleanups.push(() => {
    socket.destroy();
    server.closeAllConnections();
    server.close();
  });
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write('GET /s HTTP/1.1\r\nHost: t\r\n\r\n');
  return { outcome, received: () => text, closed: once(socket, 'close').then(() => undefined) };
}

describe('startStream', () => {
  it('subscribes the taken-over connection, after the head', async () => {
    const { outcome, received } = await serve('news');
    const sink = await outcome;
    expect(sink).toBeInstanceOf(DetachedResponse);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The hub's first write (retry:) is the first chunk, right after the head.
    expect(received()).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nd\r\nretry: 1000\n\n\r\n$/);
  });

  it('a subscribe that throws after the take-over: rethrown, and the connection is cut', async () => {
    // A channel name outside the charset: Hub.subscribe refuses it (BAD_REQUEST).
    const { outcome, closed } = await serve('no spaces');
    const error = await outcome;
    expect(error).toMatchObject({ code: ErrorCodes.BAD_REQUEST });
    await closed;
  });
});
