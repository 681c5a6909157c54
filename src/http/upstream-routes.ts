/**
 * `[proxy] routes`: path prefixes served by HTTP upstreams instead of PHP. Pure: parses and
 * validates the config map and matches request targets (longest prefix wins). Invariant: a
 * prefix is compared with the decoded, dot-segment-resolved, slash-merged path (nginx matches
 * `location` the same way), while the URI sent upstream is always the original one.
 */
import { ConfigError } from '../errors.ts';

/** One configured route: `prefix` → `origin` (scheme, host and port only). */
export interface UpstreamRoute {
  /** Normalized path prefix, e.g. "/app/"; compared with plain startsWith (like nginx `location /app/`). */
  readonly prefix: string;
  /** The upstream origin, e.g. "http://127.0.0.1:6001" (no path: the request URI is sent as is). */
  readonly origin: string;
  readonly url: URL;
}

// eslint-disable-next-line no-control-regex -- control characters and spaces are what it rejects
const BAD_PREFIX_CHARS = /[\u0000-\u0020\u007f?#]/;

/**
 * Validates `proxy.routes` and returns the routes sorted longest prefix first.
 * @throws ConfigError naming `proxy.routes`, the entry and what is allowed: a prefix must be a
 *   normalized absolute path; a target must be an http:// or https:// URL without path, query,
 *   fragment or credentials (nginx `proxy_pass http://host:port;`).
 */
export function parseUpstreamRoutes(routes: Readonly<Record<string, string>>): UpstreamRoute[] {
  const out: UpstreamRoute[] = [];
  for (const [prefix, target] of Object.entries(routes)) {
    const entry = `proxy.routes: ${JSON.stringify(prefix)} = ${JSON.stringify(target)}`;
    if (!prefix.startsWith('/')) {
      throw new ConfigError(`${entry}: a route prefix must start with "/" (e.g. "/app/")`);
    }
    if (BAD_PREFIX_CHARS.test(prefix) || normalizeMatchPath(prefix) !== prefix) {
      // A prefix that is not in normalized form could never match a normalized request path.
      throw new ConfigError(
        `${entry}: a route prefix must be a plain decoded path without "//", "." or ".." ` +
          `segments, "%XX" escapes, spaces, "?" or "#" (e.g. "/app/")`,
      );
    }
    let url: URL;
    try {
      url = new URL(target);
    } catch (err) {
      throw new ConfigError(`${entry}: ${badTarget}`, { cause: err });
    }
    if (
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      url.hostname === '' ||
      url.pathname !== '/' ||
      url.search !== '' ||
      url.hash !== '' ||
      url.username !== '' ||
      url.password !== '' ||
      target.trim() !== target
    ) {
      throw new ConfigError(`${entry}: ${badTarget}`);
    }
    out.push({ prefix, origin: url.origin, url });
  }
  return out.sort((a, b) => b.prefix.length - a.prefix.length);
}

const badTarget =
  'the target must be an http:// or https:// URL with a host and an optional port, and no ' +
  'path, query or credentials (the request URI is forwarded unchanged), e.g. "http://127.0.0.1:6001"';

/**
 * The route for a request target ("/app/x?y=1"; the query is ignored), or null. Routes must be
 * sorted longest prefix first (as parseUpstreamRoutes returns them).
 */
export function matchUpstreamRoute(
  routes: readonly UpstreamRoute[],
  requestTarget: string,
): UpstreamRoute | null {
  if (routes.length === 0 || !requestTarget.startsWith('/')) return null;
  const q = requestTarget.indexOf('?');
  const path = normalizeMatchPath(q === -1 ? requestTarget : requestTarget.slice(0, q));
  for (const route of routes) if (path.startsWith(route.prefix)) return route;
  return null;
}

/**
 * The path as nginx compares it with `location` prefixes: percent-decoded once, `.` and `..`
 * resolved (never above "/"), repeated slashes merged (merge_slashes on), trailing slash kept.
 * Malformed escapes are left as they are (the path then only matches literally).
 */
export function normalizeMatchPath(rawPath: string): string {
  let path = rawPath;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    // Not valid percent-encoding or UTF-8: match on the raw text; the upstream judges the rest.
  }
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const last = path.slice(path.lastIndexOf('/') + 1);
  const trailingSlash = last === '' || last === '.' || last === '..';
  if (segments.length === 0) return '/';
  return `/${segments.join('/')}${trailingSlash ? '/' : ''}`;
}
