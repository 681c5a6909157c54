/**
 * `cluster.redis_url`: the Redis every sidecar and relay of a cluster connects to, parsed and
 * validated before anything connects, and its redacted form for logs and messages. Pure: no
 * socket, no DNS. Invariant: a password leaves this module only in the parsed result; every
 * message and every redacted form shows it as `***`.
 *
 *   redis://[[user]:password@]host[:port][/db]     rediss://… (TLS)     [::1] for IPv6
 */
import { isIPv6 } from 'node:net';
import { ConfigError } from '../errors.ts';

/** Where to connect, as `cluster.redis_url` says. */
export interface RedisTarget {
  /** `rediss://`: connect with TLS. */
  tls: boolean;
  /** Host name or IP address; an IPv6 address without its brackets (`::1`). */
  host: string;
  /** TCP port, 1-65535 (6379 when the URL names none). */
  port: number;
  /** AUTH password, percent-decoded; absent when the URL has none. */
  password?: string;
  /** ACL user (Redis 6+), percent-decoded; absent for the default user. */
  username?: string;
  /** Logical database (`SELECT`), 0 when the URL has no path. */
  db: number;
}

const KEY = 'cluster.redis_url';
const DEFAULT_PORT = 6379;
/** Redis' `databases` is a C int: no db number can be larger. */
const MAX_DB = 2 ** 31 - 1;
const ALLOWED =
  '"redis://[[user]:password@]host[:port][/db]" or "rediss://…" (TLS), with a port of 1-65535 ' +
  '(default 6379), a db number of 0 or more (default 0), an IPv6 host in brackets ([::1]) and ' +
  'reserved characters of the user or password percent-encoded (@ as %40, / as %2F)';
/** Host names and IPv4 addresses (RFC 1123 labels; `_` too, as Docker service names allow it). */
const HOSTNAME =
  /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/**
 * The URL with its password (and a user given without a password, which may be one mistyped)
 * replaced by `***`, for logs and error messages. Works on any text, valid URL or not: everything
 * between `://` (or the start) and the last `@` is userinfo, so a password with an unencoded `@`
 * or `/` is hidden too; a `password=` query parameter is hidden as well.
 */
export function redactRedisUrl(url: string): string {
  const schemeEnd = url.indexOf('://');
  const start = schemeEnd === -1 ? 0 : schemeEnd + 3;
  const at = url.lastIndexOf('@');
  let out = url;
  if (at >= start) {
    const userinfo = url.slice(start, at);
    const colon = userinfo.indexOf(':');
    const shown = colon === -1 ? '***' : `${userinfo.slice(0, colon)}:***`;
    out = url.slice(0, start) + shown + url.slice(at);
  }
  return out.replace(/([?&]password=)[^&#]*/gi, '$1***');
}

/**
 * Parses and validates a `cluster.redis_url` value (callers handle the empty value, single-node
 * mode, before calling). `where` prefixes the message as the config loader does (`environment
 * ASKR_CLUSTER_REDIS_URL`, `flag --redis`).
 *
 * @throws ConfigError naming `cluster.redis_url`, the value with its password as `***`, what is
 *   wrong and what is allowed.
 */
export function parseRedisUrl(url: string, where?: string): RedisTarget {
  const invalid = (problem: string): ConfigError =>
    new ConfigError(
      `${where === undefined ? '' : `${where}: `}${KEY} = ${JSON.stringify(redactRedisUrl(url))}: ` +
        `${problem}; expected ${ALLOWED}`,
    );

  // A Secret written with `echo` ends with a newline: say so rather than "bad host".
  if (/\s/.test(url))
    throw invalid('it contains whitespace (a trailing newline from a Secret file?)');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (scheme === null) throw invalid('it is not a URL (no "redis://")');
  const schemeName = (scheme[1] ?? '').toLowerCase();
  if (schemeName !== 'redis' && schemeName !== 'rediss') {
    throw invalid(
      `scheme "${schemeName}://" is not supported (unix sockets and sentinels are not)`,
    );
  }
  const rest = url.slice(scheme[0].length);
  if (/[?#]/.test(rest)) throw invalid('a query string or fragment is not supported');

  // The path starts at the first "/" after the last "@": a password may hold an unencoded "/".
  const at = rest.lastIndexOf('@');
  const slash = rest.indexOf('/', at + 1);
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  const userinfo = at === -1 ? undefined : authority.slice(0, at);
  const hostPort = at === -1 ? authority : authority.slice(at + 1);

  const target: RedisTarget = {
    tls: schemeName === 'rediss',
    host: '',
    port: DEFAULT_PORT,
    db: 0,
  };

  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    if (userinfo === '') throw invalid('nothing comes before "@"');
    if (colon === -1) {
      throw invalid(
        'a user without a password cannot authenticate (write ":password@" for a password only)',
      );
    }
    const decode = (text: string, what: string): string => {
      try {
        return decodeURIComponent(text);
      } catch {
        throw invalid(`the ${what} has a malformed percent-encoding`);
      }
    };
    const username = decode(userinfo.slice(0, colon), 'user');
    const password = decode(userinfo.slice(colon + 1), 'password');
    if (password === '') throw invalid('the password is empty');
    if (username !== '') target.username = username;
    target.password = password;
  }

  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    const inside = close === -1 ? '' : hostPort.slice(1, close);
    if (close === -1 || !isIPv6(inside))
      throw invalid(`"${hostPort}" is not a bracketed IPv6 address`);
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':'))
      throw invalid(`unexpected "${after}" after the IPv6 address`);
    target.host = inside;
    portText = after === '' ? undefined : after.slice(1);
  } else {
    const colon = hostPort.indexOf(':');
    if (colon !== -1 && hostPort.indexOf(':', colon + 1) !== -1) {
      throw invalid('an IPv6 host must be in brackets, e.g. redis://[::1]:6379/0');
    }
    target.host = colon === -1 ? hostPort : hostPort.slice(0, colon);
    portText = colon === -1 ? undefined : hostPort.slice(colon + 1);
    if (target.host === '') throw invalid('the host is missing');
    if (!HOSTNAME.test(target.host))
      throw invalid(`"${target.host}" is not a host name or IP address`);
  }

  if (portText !== undefined) {
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535))
      throw invalid(`port "${portText}" is not a number of 1-65535`);
    target.port = port;
  }

  if (path !== '') {
    const db = /^\d{1,10}$/.test(path) ? Number(path) : NaN;
    if (!(db >= 0 && db <= MAX_DB))
      throw invalid(`database "/${path}" is not a number of 0 or more`);
    target.db = db;
  }
  return target;
}
