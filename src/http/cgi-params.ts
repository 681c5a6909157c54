/**
 * Builds the FastCGI params of one request: nginx's fastcgi.conf set, PATH_INFO when split, then
 * the request headers as HTTP_* (docs/architecture.md, Design notes: CGI params and security
 * rules). Pure: plain data in, ordered pairs out.
 * Invariants: a client can only ever produce names starting with HTTP_ (never PHP_VALUE,
 * PHP_ADMIN_VALUE, REQUEST_BODY_FILE); no value taken from the request contains NUL, CR or LF.
 */
import type { Route } from './route-resolver.ts';
import { normalizeAddress } from './trusted-proxies.ts';

export interface CgiRequestInfo {
  method: string;
  /** REQUEST_URI: the request-target as received, with its query. */
  rawTarget: string;
  /** Raw query string, without '?'. */
  query: string;
  /** '1.1' or '1.0'. */
  httpVersion: string;
  /** Raw header name/value pairs in order (req.rawHeaders pairs; values are latin1-decoded bytes). */
  headers: ReadonlyArray<readonly [string, string]>;
  /** Direct peer ('' for a unix socket). */
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** The connection itself is TLS. */
  tls: boolean;
  /** After trusted-proxy evaluation (clientFromForwarded). */
  clientAddress: string;
  https: boolean;
  /** Body length actually sent to FPM (a chunked body: after buffering); null when no body. */
  contentLength: number | null;
}

export interface CgiServerInfo {
  documentRoot: string;
  /** SERVER_NAME; '' takes the Host header without its port. */
  serverName: string;
  /** SERVER_SOFTWARE, e.g. 'askr-sidecar/0.1.0'. */
  serverSoftware: string;
  /**
   * PATH_INFO as the recipe's nginx block sends it: 'always' (laravel, wordpress: empty when not
   * split), 'never' (symfony), 'translated' (generic: when split, with PATH_TRANSLATED).
   */
  pathInfo?: 'always' | 'never' | 'translated';
}

/** nginx's default (underscores_in_headers off, ignore_invalid_headers on): letters, digits, '-'. */
const HEADER_NAME_RE = /^[A-Za-z0-9-]+$/;
const NUL_CR_LF_RE = /[\0\r\n]/g;
const HAS_NUL_CR_LF_RE = /[\0\r\n]/;
const HOST_RE = /^(?:[a-z0-9._-]+|\[[0-9a-f:.]+\])$/;

/**
 * Headers that node keeps once (the first wins in req.headers); PHP sees the same value the
 * sidecar routed on, not a comma-joined pair.
 */
const SINGLE_VALUED = new Set([
  'authorization',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'user-agent',
]);

/**
 * Not passed as HTTP_*: `proxy`, httpoxy (CVE-2016-5385): HTTP_PROXY would be read as the
 * outgoing proxy by Guzzle & co. Content-Type and Content-Length are passed as HTTP_* too, as
 * nginx does (getallheaders() and PSR-7 factories read them); CONTENT_LENGTH is what FPM really
 * gets (a chunked request has no Content-Length header).
 */
const DROPPED = new Set(['proxy']);

/** Value safe for a param: NUL/CR/LF removed (node's parser already rejects CR/LF; guard anyway). */
function clean(value: string): string {
  // Test first: the common clean value is returned as is, without a replace() copy.
  return HAS_NUL_CR_LF_RE.test(value) ? value.replace(NUL_CR_LF_RE, '') : value;
}

/**
 * Node decodes header bytes as latin1; the params are UTF-8 strings. Reinterpret a non-ASCII value
 * as UTF-8 when it is valid UTF-8, else keep the latin1 characters (no byte is dropped silently).
 */
function headerValue(raw: string): string {
  // eslint-disable-next-line no-control-regex -- ASCII fast path
  if (/^[\u0000-\u007f]*$/.test(raw)) return clean(raw);
  const bytes = Buffer.from(raw, 'latin1');
  const text = bytes.toString('utf8');
  return clean(Buffer.from(text, 'utf8').equals(bytes) ? text : raw);
}

/** Host header without its port, lowercased; empty or malformed gives undefined. */
function hostName(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    h = close === -1 ? h : h.slice(0, close + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  if (!HOST_RE.test(h)) return undefined;
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

const port = (n: number): string => (Number.isInteger(n) && n > 0 && n < 65536 ? String(n) : '');

/**
 * The params for `route`, in nginx fastcgi.conf order, then PATH_INFO / PATH_TRANSLATED (only when
 * non-empty), then HTTP_* in first-appearance order, then `extra` (internal requests; later pairs
 * override earlier ones in php-fpm). Never throws.
 *
 * Headers: names outside [A-Za-z0-9-] are dropped (`X_Forwarded_For` would alias
 * X-Forwarded-For once folded); repeated headers are joined with ', ' (Cookie with '; ');
 * single-valued ones keep the first. CONTENT_LENGTH is '' without a body, like nginx.
 * REMOTE_PORT is the peer's port only when REMOTE_ADDR is the peer (nginx realip: a forwarded
 * address without a port leaves $remote_port empty).
 */
export function buildCgiParams(
  req: CgiRequestInfo,
  route: Extract<Route, { kind: 'php' }>,
  server: CgiServerInfo,
  extra?: ReadonlyArray<readonly [string, string]>,
): Array<[string, string]> {
  const headers = new Map<string, { name: string; values: string[] }>();
  for (const [name, value] of req.headers) {
    if (!HEADER_NAME_RE.test(name)) continue;
    const key = name.toLowerCase();
    const entry = headers.get(key);
    if (entry === undefined) headers.set(key, { name: key, values: [headerValue(value)] });
    else if (!SINGLE_VALUED.has(key)) entry.values.push(headerValue(value));
  }

  const peer = normalizeAddress(req.remoteAddress);
  const clientAddress = normalizeAddress(req.clientAddress);
  const localAddress = normalizeAddress(req.localAddress);
  const serverName =
    server.serverName !== ''
      ? server.serverName
      : (hostName(headers.get('host')?.values[0]) ?? localAddress);

  const params: Array<[string, string]> = [
    ['SCRIPT_FILENAME', route.scriptFilename],
    ['QUERY_STRING', req.query],
    ['REQUEST_METHOD', req.method],
    ['CONTENT_TYPE', headers.get('content-type')?.values[0] ?? ''],
    ['CONTENT_LENGTH', req.contentLength === null ? '' : String(req.contentLength)],
    ['SCRIPT_NAME', route.scriptName],
    ['REQUEST_URI', req.rawTarget],
    ['DOCUMENT_URI', route.documentUri],
    ['DOCUMENT_ROOT', server.documentRoot],
    ['SERVER_PROTOCOL', `HTTP/${req.httpVersion}`],
    ['REQUEST_SCHEME', req.https ? 'https' : 'http'],
  ];
  if (req.https) params.push(['HTTPS', 'on']);
  params.push(
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', server.serverSoftware],
    ['REMOTE_ADDR', clientAddress],
    ['REMOTE_PORT', clientAddress === peer ? port(req.remotePort) : ''],
    // Debian's fastcgi_params: `REMOTE_USER $remote_user`, empty without HTTP auth in nginx.
    ['REMOTE_USER', ''],
    ['SERVER_ADDR', localAddress],
    ['SERVER_PORT', port(req.localPort)],
    ['SERVER_NAME', serverName],
    ['REDIRECT_STATUS', '200'],
  );
  // Laravel's and WordPress's blocks pass `fastcgi_param PATH_INFO $fastcgi_path_info` always
  // (empty when nothing was split); Symfony's sets none; none sets PATH_TRANSLATED, which only
  // the generic recipe sends (CGI/1.1's meaning: root + PATH_INFO).
  const pathInfoMode = server.pathInfo ?? 'always';
  if (pathInfoMode === 'always' || (pathInfoMode !== 'never' && route.pathInfo !== '')) {
    params.push(['PATH_INFO', route.pathInfo]);
  }
  if (pathInfoMode === 'translated' && route.pathInfo !== '') {
    params.push(['PATH_TRANSLATED', server.documentRoot + route.pathInfo]);
  }
  for (const p of params) p[1] = clean(p[1]);

  for (const { name, values } of headers.values()) {
    if (DROPPED.has(name)) continue;
    // Every client-controlled name gets the HTTP_ prefix: `PHP-VALUE` becomes HTTP_PHP_VALUE.
    const cgiName = 'HTTP_' + name.toUpperCase().replaceAll('-', '_');
    params.push([cgiName, values.join(name === 'cookie' ? '; ' : ', ')]);
  }
  if (extra !== undefined) for (const [k, v] of extra) params.push([k, v]);
  return params;
}
