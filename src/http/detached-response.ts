/**
 * A held stream's response once node:http has let go of its connection (socket-detach.ts, issue
 * 13: a held stream needs its socket and its queue, not node's parser, request and response,
 * ~15 KiB a connection). It writes to the socket framed exactly as node's ServerResponse frames a
 * write (chunked: `<hex length>\r\n<bytes>\r\n`, and `0\r\n\r\n` at the end; raw for an HTTP/1.0
 * client), so the bytes on the wire are unchanged. It holds the socket and two flags, nothing else.
 * Invariants: the head goes out through the response before the take-over; every end closes the
 * connection (as the end of a `Connection: close` response does).
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { detach, planDetach } from './socket-detach.ts';

/**
 * The HTTP server's responses (createServer's `ServerResponse` option): a held stream may take the
 * connection over from one ({@link takeOver}). The server's subclass moves its bookkeeping of the
 * request (in-flight count, access log) to the stream in onTakenOver: the response never emits
 * 'close' after it.
 */
export abstract class StreamableResponse extends ServerResponse {
  /** The connection now belongs to `stream` (its 'close' ends the request). Must not throw. */
  abstract onTakenOver(stream: DetachedResponse): void;
}

/** Statuses whose response has no body (RFC 9110): nothing to stream on them. */
const NO_BODY = new Set([204, 304]);
const CRLF = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);

/**
 * Takes the connection of a held stream over from node:http, or null when it cannot (a HEAD
 * request or a bodiless status, a response not from the sidecar's server, or what planDetach
 * refuses): the caller then writes through `res` as before. `res.writeHead()` must have been called
 * and nothing written; the head goes out now (in the same packet as the first write, as node
 * sends it), and `res` must not be used after.
 */
export function takeOver(req: IncomingMessage, res: ServerResponse): DetachedResponse | null {
  if (!(res instanceof StreamableResponse) || req.method === 'HEAD') return null;
  if (NO_BODY.has(res.statusCode) || res.statusCode < 200) return null;
  const plan = planDetach(req, res);
  if (plan === null) return null;
  // An empty write sends the head as node sends it with a first chunk (its header string as
  // latin1, unlike flushHeaders), corked until the next tick: the stream's first write joins it.
  res.write(EMPTY);
  const chunked = res.chunkedEncoding;
  const socket = detach(plan, res);
  socket.on('error', onSocketError);
  socket.on('end', onSocketEnd);
  socket.on('data', onSocketData);
  socket.resume();
  const stream = new DetachedResponse(socket, chunked);
  res.onTakenOver(stream);
  return stream;
}

/**
 * The stream's writer on the raw socket. It satisfies the hub's SseSink: `write()` is one chunk (one
 * writev of size line, bytes, CRLF: the frame Buffer itself is shared with every other stream, never
 * copied), its callback runs once the socket took the bytes; 'close' and 'drain' are the socket's.
 */
export class DetachedResponse {
  readonly socket: Socket;
  readonly #chunked: boolean;
  #finished = false;

  constructor(socket: Socket, chunked: boolean) {
    this.socket = socket;
    this.#chunked = chunked;
  }

  /** Whether the stream was ended by us and its last byte handed to the kernel (not cut: 499). */
  get finished(): boolean {
    return this.#finished;
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  /** Bytes written and not yet taken by the kernel (framing included), as the response counted. */
  get writableLength(): number {
    return this.socket.writableLength;
  }

  get writableNeedDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Writes one chunk; false when the socket is over its high-water mark (wait for 'drain').
   * After the end, or once the socket is gone, the chunk is dropped and `callback` gets an error. */
  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean {
    const { socket } = this;
    if (socket.destroyed || socket.writableEnded) {
      if (callback !== undefined) process.nextTick(callback, new Error('the stream has ended'));
      return false;
    }
    // An empty chunk would be the last chunk: node writes nothing for it (but calls back).
    if (!this.#chunked || chunk.length === 0) return socket.write(chunk, callback);
    socket.cork();
    socket.write(chunkSizeLine(chunk.length), 'latin1');
    socket.write(chunk);
    const ok = socket.write(CRLF, callback);
    socket.uncork();
    return ok;
  }

  /** Ends the response (the last chunk), then closes the connection once it is flushed. */
  end(): void {
    const { socket } = this;
    if (socket.destroyed || socket.writableEnded) return;
    const onFlushed = (err?: Error | null): void => {
      if (err === undefined || err === null) this.#finished = true;
      socket.destroy();
    };
    if (this.#chunked) socket.end(LAST_CHUNK, onFlushed);
    else socket.end(onFlushed);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** `listener` runs once the connection closed (the socket's 'close', which comes once). */
  once(event: 'close', listener: () => void): this {
    this.socket.on(event, listener);
    return this;
  }

  /** `listener` runs when the socket drained after a write() that returned false. */
  on(event: 'drain', listener: () => void): this {
    this.socket.on(event, listener);
    return this;
  }
}

/**
 * The chunk-size line of a chunk of `length` bytes, as node writes it (a string: written, it is
 * copied; held in a stalled socket's queue, it pins no shared Buffer pool slab). The last one is
 * kept: a fan-out writes the same frame to every stream, so they share its line too.
 */
function chunkSizeLine(length: number): string {
  if (length !== lastLength) {
    lastLine = `${length.toString(16)}\r\n`;
    lastLength = length;
  }
  return lastLine;
}
let lastLength = 0;
let lastLine = '0\r\n';

/** A socket error ends the stream: net destroys the socket, and 'close' reports it (the request is
 * logged as cut, 499). Nothing else to do; without this listener the error would be thrown. */
function onSocketError(): void {}

/** The client half-closed: close our side too, as node:http does (httpAllowHalfOpen off). */
function onSocketEnd(this: Socket): void {
  this.end();
}

/** Whatever a client sends on a held stream is read and dropped: read, so that its close is seen at
 * once; dropped, because a held stream answers nothing more on its connection (a request pipelined
 * behind it is never answered: the connection closes when the stream ends, and the client retries
 * it on a new one). */
function onSocketData(): void {}
