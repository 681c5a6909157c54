/**
 * Header rules for proxied requests: which client headers are dropped on the way to an upstream
 * (hop-by-hop, RFC 9110 §7.6.1; httpoxy), which ones the sidecar sets itself (X-Forwarded-*,
 * X-Real-IP, X-Request-Id), and which upstream response headers never reach the client.
 * Invariant: a header the sidecar sets is never also taken from the client.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones Go's ReverseProxy also drops). */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
];

/** Client headers whose value the sidecar decides (forwardedHeaders), never the client. */
const SET_BY_SIDECAR = ['x-real-ip', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'];

/** True for `GET` with `Upgrade: websocket` (RFC 6455 §4.1). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return (
    req.method === 'GET' && upgrade !== undefined && upgrade.trim().toLowerCase() === 'websocket'
  );
}

/**
 * Headers a Connection header may not remove: they frame the message or name the site. Listing
 * `Content-Length` in Connection must not turn a GET with a body into unframed bytes on a shared
 * upstream connection (request smuggling).
 */
const PROTECTED = new Set(['content-length', 'transfer-encoding', 'host']);

/** Lowercased names listed in a Connection header: hop-by-hop by declaration (RFC 9110 §7.6.1). */
function connectionTokens(headers: IncomingHttpHeaders): string[] {
  const value = headers.connection;
  if (value === undefined) return [];
  return value
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && !PROTECTED.has(t));
}

/**
 * Removes, in place, what must not reach the upstream: hop-by-hop headers and the ones they name,
 * `Proxy` (httpoxy, CVE-2016-5385: an upstream CGI would take it as HTTP_PROXY), headers the
 * sidecar sets itself, and `Expect` (the sidecar already answered 100 Continue). For a WebSocket
 * handshake `Connection` and `Upgrade` stay: they are the handshake.
 */
export function stripRequestHopByHop(headers: IncomingHttpHeaders, websocket: boolean): void {
  const keep = websocket ? new Set(['connection', 'upgrade']) : new Set<string>();
  for (const name of [...connectionTokens(headers), ...HOP_BY_HOP, ...SET_BY_SIDECAR, 'proxy']) {
    if (!keep.has(name)) Reflect.deleteProperty(headers, name);
  }
  if (!websocket) delete headers.expect;
}

/**
 * Removes, in place, hop-by-hop headers of an upstream response (and the ones its Connection
 * header names) before they are copied to the client. Transfer-Encoding is left to http-proxy-3,
 * which drops it (Node re-frames the body).
 */
export function stripResponseHopByHop(headers: IncomingHttpHeaders): void {
  for (const name of [...connectionTokens(headers), ...HOP_BY_HOP])
    Reflect.deleteProperty(headers, name);
}

/**
 * Headers the sidecar sets on every proxied request, like nginx's usual
 * `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;` with realip: the client address
 * after trusted-proxy evaluation is appended to the X-Forwarded-For received (so an upstream that
 * trusts only the sidecar reads the rightmost element, or X-Real-IP). X-Forwarded-Proto and
 * X-Forwarded-Host replace whatever the client sent. An empty clientAddress (unix-socket peer)
 * adds no address.
 */
export function forwardedHeaders(
  req: IncomingMessage,
  clientAddress: string,
  https: boolean,
  requestId: string,
): Record<string, string> {
  const out: Record<string, string> = { 'x-forwarded-proto': https ? 'https' : 'http' };
  const xff = req.headers['x-forwarded-for'];
  const received = Array.isArray(xff) ? xff.join(', ') : (xff ?? '').trim();
  if (clientAddress !== '') {
    out['x-forwarded-for'] = received === '' ? clientAddress : `${received}, ${clientAddress}`;
    out['x-real-ip'] = clientAddress;
  }
  const host = req.headers.host;
  if (host !== undefined && host !== '') out['x-forwarded-host'] = host;
  if (requestId !== '') out['x-request-id'] = requestId;
  return out;
}
