// The take-over of a held stream's connection from node:http (issue 13: memory per held stream),
// on a real node:http server with raw TCP clients: the bytes on the wire are exactly those the
// ServerResponse writes (chunked, HTTP/1.0, a latin1 head), node's parser and the request and
// response objects are let go, the socket's close, half-close and backpressure reach the stream,
// and what cannot be taken over (HEAD, 204, a pipelined request, a plain ServerResponse) is left
// to the response. A failure of 'takes over on this Node' after a Node upgrade means node:http's
// internals moved (socket-detach.ts): streams then cost node's ~15 KiB again.
import { once } from 'node:events';
import { createServer, Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { DetachedResponse, StreamableResponse, takeOver } from './detached-response.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

const taken: DetachedResponse[] = [];
class TestResponse extends StreamableResponse {
  onTakenOver(stream: DetachedResponse): void {
    taken.push(stream);
  }
}

/**
 * Listens with `handler` run after the request was read (as the sidecar's handlers run, after an
 * await): node's parser is done with it. `sync`: run it inside node's 'request' event.
 */
async function listen(handler: Handler, plain = false, sync = false): Promise<number> {
  const onRequest: Handler = sync
    ? handler
    : (req, res) => {
        setImmediate(() => {
          handler(req, res);
        });
      };
  const server = plain
    ? createServer(onRequest)
    : new Server<typeof IncomingMessage, typeof TestResponse>(
        { ServerResponse: TestResponse },
        onRequest,
      );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** A raw client: what it received (latin1), and whether the server closed the connection. */
interface Client {
  socket: Socket;
  received(): string;
  closed: Promise<void>;
  /** Resolves once what was received ends with `suffix`. */
  until(suffix: string): Promise<string>;
  /** Resolves once `check` holds for what was received. */
  waitFor(check: (text: string) => boolean): Promise<string>;
}

function client(port: number, request: string): Client {
  const socket = connect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());
  let text = '';
  const waiters: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
    for (const wake of waiters.splice(0)) wake();
  });
  socket.on('error', () => undefined);
  socket.write(request);
  const closed = once(socket, 'close').then(() => undefined);
  return {
    socket,
    received: () => text,
    closed,
    until(suffix) {
      return this.waitFor((t) => t.endsWith(suffix));
    },
    async waitFor(check) {
      while (!check(text)) {
        await Promise.race([new Promise<void>((wake) => waiters.push(wake)), closed]);
        if (socket.destroyed && !check(text)) {
          throw new Error(`closed before the expected bytes: ${JSON.stringify(text)}`);
        }
      }
      return text;
    },
  };
}

/** The stream the last request was taken over into; throws when it was not. */
function lastTaken(): DetachedResponse {
  const s = taken.at(-1);
  if (s === undefined) throw new Error('nothing was taken over');
  return s;
}

const GET = 'GET /s HTTP/1.1\r\nHost: t\r\n\r\n';
const HEAD_LATIN1 = { 'content-type': 'text/event-stream', 'x-name': 'caf\u00e9' };
const FRAMES = ['retry: 3000\n\n', 'data: one\n\n', 'data: \u00e9t\u00e9 two\n\n'].map((s) =>
  Buffer.from(s),
);
const LAST = Buffer.from('data: last\n\n');

/** Writes FRAMES then LAST and ends, through the response or through the taken-over stream. */
function stream(via: 'response' | 'detached'): Handler {
  return (req, res) => {
    res.sendDate = false; // the Date header would differ between two runs
    res.writeHead(200, HEAD_LATIN1);
    const sink = via === 'detached' ? takeOver(req, res) : res;
    if (sink === null) throw new Error('not taken over');
    for (const frame of FRAMES) sink.write(frame);
    setImmediate(() => {
      sink.write(LAST);
      sink.end();
    });
  };
}

describe('takeOver', () => {
  it('takes over on this Node, writes the bytes a chunked ServerResponse writes, then closes', async () => {
    const viaResponse = client(await listen(stream('response')), GET);
    const expected = await viaResponse.until('0\r\n\r\n');
    const viaStream = client(await listen(stream('detached')), GET);
    await viaStream.closed;
    expect(viaStream.received()).toBe(expected);
    expect(expected).toContain('Transfer-Encoding: chunked\r\n');
    // The head is latin1 (é is one byte, 0xE9), as node writes it with a first chunk.
    expect(expected).toContain('x-name: caf\u00e9\r\n');
    expect(taken.at(-1)?.finished).toBe(true);
  });

  it('HTTP/1.0: the same raw bytes, no chunk framing', async () => {
    const request = 'GET /s HTTP/1.0\r\n\r\n';
    const viaResponse = client(await listen(stream('response')), request);
    await viaResponse.closed;
    const viaStream = client(await listen(stream('detached')), request);
    await viaStream.closed;
    expect(viaStream.received()).toBe(viaResponse.received());
    expect(viaStream.received()).not.toContain('chunked');
    expect(viaStream.received().endsWith('data: last\n\n')).toBe(true);
  });

  it("frees node's parser and lets the request and the response be collected", async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let refs: { req: WeakRef<object>; res: WeakRef<object> } | undefined;
    let parser: unknown = undefined;
    const port = await listen((req, res) => {
      refs = { req: new WeakRef(req), res: new WeakRef(res) };
      res.writeHead(200, HEAD_LATIN1);
      takeOver(req, res)?.write(LAST);
      parser = (req.socket as { parser?: unknown }).parser;
    });
    const c = client(port, GET);
    await c.until('data: last\n\n\r\n');
    const s = lastTaken();
    expect(parser).toBeNull();
    // The parser is closed after the stack unwinds; the handler's frames are gone by then.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    expect(refs?.req.deref()).toBeUndefined();
    expect(refs?.res.deref()).toBeUndefined();
    // Still a live stream.
    s.write(FRAMES[1] ?? LAST);
    await c.until('data: one\n\n\r\n');
  });

  it('the client closing, or half-closing, closes the stream (not finished: cut)', async () => {
    const port = await listen((req, res) => {
      res.writeHead(200, HEAD_LATIN1);
      takeOver(req, res)?.write(LAST);
    });
    for (const leave of ['destroy', 'end'] as const) {
      const c = client(port, GET);
      await c.until('data: last\n\n\r\n');
      const s = lastTaken();
      const closed = new Promise<void>((resolve) => s.once('close', resolve));
      if (leave === 'destroy') c.socket.destroy();
      else c.socket.end();
      await closed;
      expect(s.destroyed).toBe(true);
      expect(s.finished).toBe(false);
      // A write after the close is dropped, with an error for its callback.
      const error = await new Promise<Error | null | undefined>((resolve) =>
        s.write(LAST, resolve),
      );
      expect(error).toBeInstanceOf(Error);
    }
  });

  it('bytes the client sends are read and dropped; the stream goes on', async () => {
    const port = await listen((req, res) => {
      res.writeHead(200, HEAD_LATIN1);
      takeOver(req, res)?.write(FRAMES[1] ?? LAST);
    });
    const c = client(port, GET);
    await c.until('data: one\n\n\r\n');
    const s = lastTaken();
    c.socket.write('GET /pipelined HTTP/1.1\r\nHost: t\r\n\r\ngarbage\r\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    s.write(LAST);
    await c.until('data: last\n\n\r\n');
    expect(c.received()).not.toContain('HTTP/1.1 400');
    expect(s.destroyed).toBe(false);
  });

  it("backpressure: write() says false when the client does not read; 'drain' when it does", async () => {
    const port = await listen((req, res) => {
      res.writeHead(200, HEAD_LATIN1);
      takeOver(req, res);
    });
    const c = client(port, GET);
    await c.until('\r\n\r\n');
    const s = lastTaken();
    c.socket.pause();
    // Chunks below the socket's high-water mark: false means the kernel took no more.
    const chunk = Buffer.alloc(8 * 1024, 'x');
    let writes = 0;
    while (s.write(chunk)) if (++writes > 100_000) throw new Error('the socket never pushed back');
    expect(s.writableNeedDrain).toBe(true);
    expect(s.writableLength).toBeGreaterThan(0);
    const drained = new Promise<void>((resolve) => s.on('drain', resolve));
    c.socket.resume();
    await drained;
    expect(s.writableNeedDrain).toBe(false);
  });

  it('leaves HEAD, a 204, a pipelined request and a plain ServerResponse to the response', async () => {
    const outcomes: string[] = [];
    const handler: Handler = (req, res) => {
      res.writeHead(req.url === '/204' ? 204 : 200, { 'content-type': 'text/event-stream' });
      const s = takeOver(req, res);
      outcomes.push(`${req.method ?? ''} ${req.url ?? ''} ${s === null ? 'kept' : 'taken'}`);
      if (s === null) res.end(req.url === '/204' ? undefined : 'data: x\n\n');
      else s.end();
    };
    const port = await listen(handler);
    await client(port, 'HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n').until('\r\n\r\n');
    await client(port, 'GET /204 HTTP/1.1\r\nHost: t\r\n\r\n').until('\r\n\r\n');
    // Two requests in one packet: the second is parsed before the first is answered.
    const pipelined = client(
      port,
      'GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n',
    );
    await pipelined.waitFor((t) => t.split('0\r\n\r\n').length === 3);
    const plainPort = await listen(handler, true);
    await client(plainPort, GET).until('0\r\n\r\n');
    // Inside node's 'request' event the parser is still at work on the request: not now.
    const syncPort = await listen(handler, false, true);
    await client(syncPort, 'GET /sync HTTP/1.1\r\nHost: t\r\n\r\n').until('0\r\n\r\n');
    expect(outcomes).toEqual([
      'HEAD /h kept',
      'GET /204 kept',
      'GET /a kept',
      // The last of a pipeline, once the first was answered: its connection is free to take.
      'GET /b taken',
      'GET /s kept',
      'GET /sync kept',
    ]);
    // Both pipelined requests were answered.
    expect(pipelined.received().match(/HTTP\/1\.1 200/g)?.length).toBe(2);
  });
});
