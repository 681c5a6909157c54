/**
 * Builds the FastCGI params of one request: nginx's fastcgi.conf set, PATH_INFO when split, then
 * the request headers as HTTP_* (docs/architecture.md, Design notes: CGI params and security
 * rules). Plain data in, ordered pairs out; what repeats from request to request (the server's
 * params, HTTP_* names, a connection's normalized addresses) is kept, never recomputed.
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

/** What headerValue must look at: NUL/CR/LF or anything outside ASCII. */
const UNUSUAL_RE = /[\0\r\n\u0080-\uffff]/;

/**
 * Node decodes header bytes as latin1; the params are UTF-8 strings. Reinterpret a non-ASCII value
 * as UTF-8 when it is valid UTF-8, else keep the latin1 characters (no byte is dropped silently).
 */
function headerValue(raw: string): string {
  // One test for the common value (ASCII without NUL/CR/LF), returned as is.
  if (!UNUSUAL_RE.test(raw)) return raw;
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
 * normalizeAddress with a one-entry memory per call site: a connection's addresses repeat on
 * every request it carries (keep-alive), so the regular expression runs once per new address.
 */
class AddressMemo {
  #input = '';
  #output = normalizeAddress('');

  normalize(address: string): string {
    if (address !== this.#input) {
      this.#output = normalizeAddress(address);
      this.#input = address;
    }
    return this.#output;
  }
}
const peerMemo = new AddressMemo();
const clientMemo = new AddressMemo();
const localMemo = new AddressMemo();

/** Names of HTTP_* params by lowercase header name; bounded, as header names come from clients. */
const cgiNames = new Map<string, string>();
const MAX_CACHED_NAMES = 1024;

function cgiNameOf(lowerName: string): string {
  let cgiName = cgiNames.get(lowerName);
  if (cgiName === undefined) {
    // Every client-controlled name gets the HTTP_ prefix: `PHP-VALUE` becomes HTTP_PHP_VALUE.
    cgiName = 'HTTP_' + lowerName.toUpperCase().replaceAll('-', '_');
    if (cgiNames.size < MAX_CACHED_NAMES) cgiNames.set(lowerName, cgiName);
  }
  return cgiName;
}

/** A param; the ones that never change are shared (frozen), not rebuilt per request. */
type Param = readonly [string, string];

const param = (name: string, value: string): Param => Object.freeze([name, value] as const);
const QUERY_NONE = param('QUERY_STRING', '');
const CONTENT_TYPE_NONE = param('CONTENT_TYPE', '');
const CONTENT_LENGTH_NONE = param('CONTENT_LENGTH', '');
const PROTOCOL_11 = param('SERVER_PROTOCOL', 'HTTP/1.1');
const PROTOCOL_10 = param('SERVER_PROTOCOL', 'HTTP/1.0');
const SCHEME_HTTP = param('REQUEST_SCHEME', 'http');
const SCHEME_HTTPS = param('REQUEST_SCHEME', 'https');
const HTTPS_ON = param('HTTPS', 'on');
const GATEWAY_INTERFACE = param('GATEWAY_INTERFACE', 'CGI/1.1');
const REMOTE_USER_NONE = param('REMOTE_USER', '');
const REDIRECT_STATUS = param('REDIRECT_STATUS', '200');
const PATH_INFO_NONE = param('PATH_INFO', '');

/**
 * The params a CgiServerInfo fixes, cleaned and built once per object and values. A reload
 * updates the running object in place, so the raw values they were built from are compared.
 */
interface ServerParams {
  readonly from: readonly [string, string, string];
  readonly documentRoot: Param;
  readonly serverSoftware: Param;
  /** SERVER_NAME when configured; null: from the Host header. */
  readonly serverName: Param | null;
}
const serverParams = new WeakMap<CgiServerInfo, ServerParams>();

function serverParamsOf(server: CgiServerInfo): ServerParams {
  let fixed = serverParams.get(server);
  if (
    fixed === undefined ||
    fixed.from[0] !== server.documentRoot ||
    fixed.from[1] !== server.serverSoftware ||
    fixed.from[2] !== server.serverName
  ) {
    fixed = {
      from: [server.documentRoot, server.serverSoftware, server.serverName],
      documentRoot: param('DOCUMENT_ROOT', clean(server.documentRoot)),
      serverSoftware: param('SERVER_SOFTWARE', clean(server.serverSoftware)),
      serverName: server.serverName === '' ? null : param('SERVER_NAME', clean(server.serverName)),
    };
    serverParams.set(server, fixed);
  }
  return fixed;
}

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
 *
 * What is derived from a CgiServerInfo is computed once per object and again when a reload changes
 * its values.
 * The pairs are read-only: the constant ones are shared by every request.
 */
export function buildCgiParams(
  req: CgiRequestInfo,
  route: Extract<Route, { kind: 'php' }>,
  server: CgiServerInfo,
  extra?: ReadonlyArray<readonly [string, string]>,
): Array<readonly [string, string]> {
  // Headers by lowercase name in first-appearance order: parallel lists, and an index by name
  // only once a second header shows up (most requests from tools carry one or two).
  const names: string[] = [];
  const values: string[] = [];
  let byName: Map<string, number> | null = null;
  // The first Host and Content-Type (SERVER_NAME, CONTENT_TYPE), whatever repeats follow.
  let host: string | undefined;
  let contentType: string | undefined;
  for (const [name, value] of req.headers) {
    if (!HEADER_NAME_RE.test(name)) continue;
    const key = name.toLowerCase();
    let at: number | undefined;
    if (names.length === 1) {
      if (names[0] === key) at = 0;
    } else if (names.length > 1) {
      if (byName === null) {
        byName = new Map();
        for (let i = 0; i < names.length; i += 1) byName.set(names[i] as string, i);
      }
      at = byName.get(key);
    }
    if (at === undefined) {
      const text = headerValue(value);
      byName?.set(key, names.length);
      names.push(key);
      values.push(text);
      if (key === 'host') host = text;
      else if (key === 'content-type') contentType = text;
    } else if (!SINGLE_VALUED.has(key)) {
      values[at] = `${values[at] as string}${key === 'cookie' ? '; ' : ', '}${headerValue(value)}`;
    }
  }
  const fixed = serverParamsOf(server);
  const peer = peerMemo.normalize(req.remoteAddress);
  const clientAddress = clientMemo.normalize(req.clientAddress);
  const localAddress = localMemo.normalize(req.localAddress);

  const params: Param[] = [
    ['SCRIPT_FILENAME', clean(route.scriptFilename)],
    req.query === '' ? QUERY_NONE : ['QUERY_STRING', clean(req.query)],
    ['REQUEST_METHOD', clean(req.method)],
    contentType === undefined ? CONTENT_TYPE_NONE : ['CONTENT_TYPE', contentType],
    req.contentLength === null
      ? CONTENT_LENGTH_NONE
      : ['CONTENT_LENGTH', String(req.contentLength)],
    ['SCRIPT_NAME', clean(route.scriptName)],
    ['REQUEST_URI', clean(req.rawTarget)],
    ['DOCUMENT_URI', clean(route.documentUri)],
    fixed.documentRoot,
    req.httpVersion === '1.1'
      ? PROTOCOL_11
      : req.httpVersion === '1.0'
        ? PROTOCOL_10
        : ['SERVER_PROTOCOL', clean(`HTTP/${req.httpVersion}`)],
    req.https ? SCHEME_HTTPS : SCHEME_HTTP,
  ];
  if (req.https) params.push(HTTPS_ON);
  params.push(
    GATEWAY_INTERFACE,
    fixed.serverSoftware,
    ['REMOTE_ADDR', clean(clientAddress)],
    ['REMOTE_PORT', clientAddress === peer ? port(req.remotePort) : ''],
    // Debian's fastcgi_params: `REMOTE_USER $remote_user`, empty without HTTP auth in nginx.
    REMOTE_USER_NONE,
    ['SERVER_ADDR', clean(localAddress)],
    ['SERVER_PORT', port(req.localPort)],
    fixed.serverName ?? ['SERVER_NAME', clean(hostName(host) ?? localAddress)],
    REDIRECT_STATUS,
  );
  // Laravel's and WordPress's blocks pass `fastcgi_param PATH_INFO $fastcgi_path_info` always
  // (empty when nothing was split); Symfony's sets none; none sets PATH_TRANSLATED, which only
  // the generic recipe sends (CGI/1.1's meaning: root + PATH_INFO).
  const pathInfoMode = server.pathInfo ?? 'always';
  if (pathInfoMode === 'always' || (pathInfoMode !== 'never' && route.pathInfo !== '')) {
    params.push(route.pathInfo === '' ? PATH_INFO_NONE : ['PATH_INFO', clean(route.pathInfo)]);
  }
  if (pathInfoMode === 'translated' && route.pathInfo !== '') {
    params.push(['PATH_TRANSLATED', clean(server.documentRoot + route.pathInfo)]);
  }

  for (let i = 0; i < names.length; i += 1) {
    const name = names[i] as string;
    if (DROPPED.has(name)) continue;
    params.push([cgiNameOf(name), values[i] as string]);
  }
  if (extra !== undefined) for (const pair of extra) params.push(pair);
  return params;
}
