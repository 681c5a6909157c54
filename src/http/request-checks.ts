/**
 * What the sidecar refuses before routing, the way nginx refuses it: unparsable request heads (by
 * llhttp's error code), versions other than HTTP/1.x, Host and framing errors, TRACE; and the raw
 * answer written on a socket no ServerResponse owns. Pure checks over a parsed head.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { SidecarConfig } from '../config/schema.ts';

/** How a request head that never parsed is answered, by node's error code (else BAD_REQUEST). */
export interface ClientErrorAnswer {
  status: number;
  reason: string;
  message(code: string, config: SidecarConfig): string;
}
export const BAD_REQUEST: ClientErrorAnswer = {
  status: 400,
  reason: 'bad_request',
  message: (code) => `malformed HTTP request (${code})`,
};
const VERSION_NOT_SUPPORTED: ClientErrorAnswer = {
  status: 505,
  reason: 'http_version',
  message: () => 'HTTP version not supported; this server speaks HTTP/1.1 and HTTP/1.0',
};
export const CLIENT_ERRORS: Readonly<Record<string, ClientErrorAnswer>> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'header_too_large',
    message: (_code, config) =>
      `request head exceeds ${config.server.max_header_size} bytes (server.max_header_size)`,
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'header_timeout',
    message: () => 'request head not received in time (server.header_timeout)',
  },
  // llhttp knows HTTP/0.9, 1.0, 1.1 and 2.0 request lines; any other version (1.2, 3.1) is this
  // parse error, where nginx answers 505. "PRI * HTTP/2.0" (an HTTP/2 preface) pauses the parser.
  HPE_INVALID_VERSION: VERSION_NOT_SUPPORTED,
  HPE_PAUSED_H2_UPGRADE: VERSION_NOT_SUPPORTED,
};

/** The methods the sidecar serves (the Allow header of its 405 answers). */
export const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/** A request refused before routing, the way nginx refuses it. */
export interface Refusal {
  status: number;
  reason: string;
  message: string;
  headers?: Record<string, string>;
}

/**
 * What nginx refuses once the head is parsed, in its order (ngx_http_process_request_header);
 * null when the request may be routed. Runs on every request: a loop over the raw headers only.
 */
export function refusalOf(req: IncomingMessage): Refusal | null {
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1) {
    // llhttp accepts "HTTP/2.0" and "HTTP/0.9" request lines; other versions fail in clientError.
    return {
      status: 505,
      reason: 'http_version',
      message: `HTTP/${req.httpVersion} is not supported; this server speaks HTTP/1.1 and HTTP/1.0`,
    };
  }
  let hosts = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.length === 4 && name.toLowerCase() === 'host') hosts += 1;
  }
  // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for any request with several
  // (Node keeps only the first, so PHP and the upstream could disagree on the virtual host).
  if (hosts > 1) {
    return {
      status: 400,
      reason: 'bad_host',
      message: `the request has ${hosts} Host headers; exactly one is allowed`,
    };
  }
  if (hosts === 0 && req.httpVersionMinor === 1) {
    return { status: 400, reason: 'bad_host', message: 'HTTP/1.1 request without a Host header' };
  }
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing (a request
  // smuggling vector when a hop treats the message as 1.0 and reads no chunks).
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) {
    return {
      status: 400,
      reason: 'bad_framing',
      message: 'Transfer-Encoding is not allowed in an HTTP/1.0 request',
    };
  }
  // TRACE echoes the request, cookies included (cross-site tracing); nginx refuses it.
  if (req.method === 'TRACE') {
    return {
      status: 405,
      reason: 'method_not_allowed',
      message: 'TRACE is not allowed',
      headers: { allow: ALLOWED_METHODS },
    };
  }
  return null;
}

/** Answers on a socket no ServerResponse owns (unparsable request, CONNECT), then closes it. */
export function answerOnSocket(
  socket: Socket,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  const text = STATUS_CODES[status] ?? 'Error';
  const body = `${status} ${text}\n${message}\n`;
  let head =
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'cache-control: no-store\r\nconnection: close\r\n';
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(`${head}\r\n${body}`);
}
