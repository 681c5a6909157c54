/**
 * Per-request state shared by the handlers: the request id, the timing the access log reports and
 * the route kind that labels metrics. Created by the server for every request.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CgiRequestInfo } from './cgi-params.ts';

export type RouteKind = 'static' | 'php' | 'sse' | 'publish' | 'upstream' | 'internal' | 'error';

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  readonly log: Logger;
  readonly startedAt: bigint;
  /** Client address after trusted-proxy evaluation, and whether the client used HTTPS. */
  clientAddress: string;
  https: boolean;
  kind: RouteKind;
  /** Milliseconds from sending to FPM until the CGI head arrived; null when FPM was not asked. */
  upstreamMs: number | null;
  /** Status to log when it differs from res.statusCode (499 for client aborts). */
  logStatus: number | null;
  /** Short reason for an error answer, for the access log. */
  error: string | null;
  /** server.error_pages: the page for an error status the sidecar answers itself, if any. */
  errorPage?: (status: number) => { body: Buffer; contentType: string } | null;
  /**
   * server.error_pages naming a PHP script: starts it (GET, no body, the error status kept) and
   * returns true when it took the response; false when there is none or this is already one.
   */
  phpErrorPage?: (status: number) => boolean;
  /** Set while a PHP error page runs: the status its response gets, whatever PHP says. */
  errorStatus?: number;
  /** Headers (flat name, value list) every PHP response gets beside PHP's own (Mercure discovery). */
  phpHeaders?: readonly string[];
}

/** Raw header name/value pairs of a request, in order (IncomingMessage.rawHeaders is flat). */
export function headerPairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] ?? '', raw[i + 1] ?? '']);
  return out;
}

/**
 * The connection facts of a request for buildCgiParams: socket addresses and the client address
 * after trusted-proxy evaluation. The caller supplies what differs per FastCGI request.
 */
export function cgiRequestInfo(
  ctx: RequestContext,
  request: Pick<CgiRequestInfo, 'method' | 'rawTarget' | 'query' | 'headers' | 'contentLength'>,
): CgiRequestInfo {
  const socket = ctx.req.socket;
  return {
    ...request,
    httpVersion: ctx.req.httpVersion,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
    tls: false,
    clientAddress: ctx.clientAddress,
    https: ctx.https,
  };
}

export function elapsedMs(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

/** Answers with a plain-text error body unless headers already went out (then the socket is cut). */
export function sendError(
  ctx: RequestContext,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  const { res } = ctx;
  ctx.error = message;
  if (res.headersSent) {
    ctx.logStatus ??= status;
    res.destroy();
    return;
  }
  if (ctx.phpErrorPage?.(status) === true) return;
  const page = ctx.errorPage?.(status) ?? null;
  if (page !== null) {
    res.writeHead(status, {
      'content-type': page.contentType,
      'content-length': page.body.length,
      'cache-control': 'no-store',
      'x-request-id': ctx.requestId,
      ...headers,
    });
    res.end(ctx.req.method === 'HEAD' ? undefined : page.body);
    return;
  }
  const body = `${status} ${statusLine(status)}\n${message}\nrequest id: ${ctx.requestId}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': ctx.requestId,
    ...headers,
  });
  res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

function statusLine(status: number): string {
  // 413 keeps RFC 9110's name (Node still says "Payload Too Large").
  if (status === 413) return 'Content Too Large';
  return STATUS_CODES[status] ?? 'Error';
}
