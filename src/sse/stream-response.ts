/**
 * The response head every held stream gets (docs/architecture.md, Design notes: Streams, holds
 * and the hub), CORS for the events endpoint, and what the events endpoint, PHP holds and Mercure
 * subscribers share: the channel-list checks, the admission of a stream (a place taken in the hub
 * before the response head, or a 429) and the start of the stream (its head, then its connection
 * taken over from node:http, which keeps only the socket).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ErrorCodes, isSidecarError } from '../errors.ts';
import { takeOver } from '../http/detached-response.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { Hub, SseSink, StreamSlot, SubscribeInput } from './hub.ts';

/** Seconds a client refused by a stream limit is asked to wait (Retry-After). */
const LIMIT_RETRY_AFTER_S = '5';

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

/** CORS headers for the events endpoint: "*" allows any origin without credentials; listed origins get credentials. */
export function corsHeaders(
  req: IncomingMessage,
  allowedOrigins: readonly string[],
): Record<string, string> {
  const origin = req.headers.origin;
  if (origin === undefined || allowedOrigins.length === 0) return {};
  if (allowedOrigins.includes(origin)) {
    return {
      'access-control-allow-origin': origin,
      'access-control-allow-credentials': 'true',
      vary: 'Origin',
    };
  }
  if (allowedOrigins.includes('*')) return { 'access-control-allow-origin': '*' };
  return {};
}

/** Answers a CORS preflight (OPTIONS) with 204: `cors` from corsHeaders, the methods and request
 * headers the route accepts, cached for 10 minutes. One home for every route that takes them. */
export function answerPreflight(
  res: ServerResponse,
  cors: Record<string, string>,
  methods: string,
  allowedHeaders: string,
): void {
  res.writeHead(204, {
    ...cors,
    'access-control-allow-methods': methods,
    'access-control-allow-headers': allowedHeaders,
    'access-control-max-age': '600',
  });
  res.end();
}

/** `Last-Event-ID` header, else the `lastEventId` query parameter (EventSource cannot set headers on first connect). */
export function lastEventIdOf(req: IncomingMessage, url: URL): string | null {
  const header = req.headers['last-event-id'];
  if (typeof header === 'string' && header !== '') return header;
  return url.searchParams.get('lastEventId');
}

/**
 * Splits "a, b" lists (X-Askr-Subscribe, Grip-Channel with ;params) into unique channel names.
 * ',' separates channels and ';' starts a channel's parameters, so a name holding either (Pusher's
 * charset allows both) cannot be given in such a header: the part before it is taken as the name.
 * Such channels are subscribed with repeated `channel=` parameters of the events endpoint.
 */
export function splitChannelHeader(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const name = (part.split(';')[0] ?? '').trim();
    if (name !== '' && !out.includes(name)) out.push(name);
  }
  return out;
}

/**
 * Takes a place for this request's stream in the hub (Hub.reserve; subscribe() with ctx.res
 * takes it, the response's close gives it back), or answers 429 with Retry-After and the limit's
 * message (counted as `stream_limit`) and returns null. Also null, answering nothing, when the
 * client is already gone.
 * @throws what Hub.reserve throws, other than a limit (nothing else in practice).
 */
export function reserveStream(
  ctx: RequestContext,
  deps: { hub: Hub; onRejected?(reason: string): void },
  headers: Record<string, string> = {},
): StreamSlot | null {
  if (ctx.res.destroyed) return null;
  try {
    return deps.hub.reserve(ctx.res, ctx.clientAddress);
  } catch (err) {
    if (!isSidecarError(err) || err.code !== ErrorCodes.LIMIT) throw err;
    deps.onRejected?.('stream_limit');
    sendError(ctx, 429, err.message, { ...headers, 'retry-after': LIMIT_RETRY_AFTER_S });
    return null;
  }
}

/**
 * Sends a held stream's response head, then subscribes the stream (Hub.subscribe with `input`) on
 * the connection taken over from node:http (its parser, request and response objects freed:
 * issue 13, memory per stream) when it can be, else on the response itself (HEAD, a request
 * pipelined behind this one). Returns what the stream is written to: listen to its 'close', not
 * the response's (a response taken over never closes).
 * @throws what Hub.subscribe throws, after cutting a taken-over connection (the response can no
 *   longer do it).
 */
export function startStream(
  ctx: RequestContext,
  status: number,
  headers: OutgoingHttpHeaders | string[],
  hub: Hub,
  input: Omit<SubscribeInput, 'sink' | 'reservedAs'>,
): SseSink {
  const { req, res } = ctx;
  res.writeHead(status, headers);
  // Frames are small and must leave at once; the keep-alive probes find dead peers behind NATs.
  req.socket.setNoDelay(true);
  req.socket.setKeepAlive(true, 60_000);
  const sink = takeOver(req, res) ?? res;
  try {
    // The place reserveStream() took for the response is the stream's.
    hub.subscribe({ ...input, sink, reservedAs: res });
  } catch (err) {
    if (sink !== res) sink.destroy();
    throw err;
  }
  return sink;
}
