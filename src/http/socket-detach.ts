/**
 * Takes a connection away from node:http once a held stream's response head is out, as node does
 * itself for an 'upgrade' (lib/_http_server.js, onParserExecuteCommon): its HTTP parser is freed
 * (about 6 KiB of native memory per connection, issue 13) and node's per-connection listeners are
 * removed, so the request, the response and their closures can be collected.
 * Invariant: node internals are touched here only, and each is checked before anything changes;
 * when one is not as expected (another Node version, a pipelined request, TLS), nothing is changed
 * and the caller keeps writing through the ServerResponse.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

/**
 * The listeners node:http puts on a server connection (Node 24 lib/_http_server.js,
 * connectionListenerInternal), by the names node gives them; the response's own 'close' listener
 * goes with res.detachSocket(). net.Socket's own listeners ('end': onReadableStreamEnd) stay.
 */
const HTTP_LISTENERS: ReadonlyArray<readonly [event: string, name: string]> = [
  ['data', 'bound socketOnData'],
  ['end', 'bound socketOnEnd'],
  ['close', 'bound socketOnClose'],
  ['drain', 'bound socketOnDrain'],
  ['error', 'socketOnError'],
  ['timeout', 'socketOnTimeout'],
  ['resume', 'onSocketResume'],
  ['pause', 'onSocketPause'],
];

/** What is used of node's HTTPParser (an internal binding, so checked at run time). */
interface HttpParser {
  incoming: unknown;
  socket: unknown;
  onIncoming: unknown;
  _consumed?: unknown;
  unconsume(): void;
  remove(): void;
  close(): void;
}

/** A server socket with node:http's own fields (undocumented). */
interface HttpSocket extends Socket {
  parser?: unknown;
  _httpMessage?: unknown;
}

function isHttpParser(value: unknown): value is HttpParser {
  if (typeof value !== 'object' || value === null) return false;
  const parser = value as Record<string, unknown>;
  return (
    typeof parser['unconsume'] === 'function' &&
    typeof parser['remove'] === 'function' &&
    typeof parser['close'] === 'function' &&
    'incoming' in parser
  );
}

type Listener = Parameters<Socket['removeListener']>[1];

/** A connection ready to be taken over: call {@link detach} (synchronously, nothing in between). */
export interface DetachPlan {
  readonly socket: Socket;
  readonly parser: HttpParser;
  readonly listeners: ReadonlyArray<readonly [event: string, listener: Listener]>;
}

/**
 * Whether `res`'s connection can be taken from node:http: a plain TCP connection (TLS sockets are
 * left alone: the sidecar has none, and they were never tried), `res` its current response,
 * `req` read to its end (so node's parser is done with it: never inside node's own 'request'
 * event) and the last request parsed on it (nothing pipelined behind it), and node's parser and
 * listeners where this file expects them. Null when not; nothing is changed either way.
 */
export function planDetach(req: IncomingMessage, res: ServerResponse): DetachPlan | null {
  const socket = req.socket as HttpSocket;
  if (!(socket instanceof Socket) || 'encrypted' in socket) return null;
  if (socket.destroyed || !socket.writable || res.socket !== socket || !req.complete) return null;
  if (socket._httpMessage !== res) return null;
  const parser = socket.parser;
  if (!isHttpParser(parser) || parser.incoming !== req || parser.socket !== socket) return null;
  const listeners: Array<readonly [string, Listener]> = [];
  for (const [event, name] of HTTP_LISTENERS) {
    const listener = socket.listeners(event).find((fn) => fn.name === name);
    if (listener === undefined) return null;
    listeners.push([event, listener as Listener]);
  }
  return { socket, parser, listeners };
}

/**
 * Detaches the connection: node's listeners off the socket, the response's socket detached, the
 * parser out of the server's connection list (no header/request timeout applies any more) and
 * closed once the current stack has unwound (as node's freeParser does). The socket is then the
 * caller's alone, with nobody reading it: the caller must add its own 'error', 'end' and 'data'
 * listeners and resume it. The response head must be written before; `res` must not be used after.
 */
export function detach(plan: DetachPlan, res: ServerResponse): Socket {
  const { parser, listeners } = plan;
  const socket = plan.socket as HttpSocket;
  for (const [event, listener] of listeners) socket.removeListener(event, listener);
  res.detachSocket(socket);
  if (parser._consumed === true) parser.unconsume();
  parser._consumed = false;
  parser.remove();
  parser.incoming = null;
  parser.socket = null;
  parser.onIncoming = null;
  socket.parser = null;
  // Node frees a parser after the stack that used it has unwound (freeParser, closeParserInstance).
  setImmediate(closeParser, parser);
  // node:http wrapped these to stop its parser consuming the socket when a 'data' listener comes:
  // there is no parser any more. Assigned, not deleted: a delete would make the socket a slow
  // dictionary-mode object.
  /* eslint-disable @typescript-eslint/unbound-method -- the prototype's own methods, put back
     on the socket they are called on, as node's wrapper itself does */
  socket.on = Socket.prototype.on;
  socket.addListener = Socket.prototype.addListener;
  socket.prependListener = Socket.prototype.prependListener;
  /* eslint-enable @typescript-eslint/unbound-method */
  return socket;
}

function closeParser(parser: HttpParser): void {
  parser.close();
}
