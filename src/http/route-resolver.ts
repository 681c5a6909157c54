/**
 * Maps a request-target to what serves it: a static file, a PHP script, or an error (Laravel's
 * nginx recipe `try_files $uri $uri/ /index.php?$query_string`; docs/architecture.md, Design
 * notes: Routing).
 * Invariants: the path is decoded exactly once; a route never names a file whose realpath is
 * outside the root; PHP sources are never served as static files; PATH_INFO is split only at an
 * ASCII `.php/` whose prefix is an existing regular file (CVE-2019-11043 family).
 */
import type { Stats } from 'node:fs';
import { realpathSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { toError } from '../errors.ts';
import type { OpenFileCache } from './open-file-cache.ts';

export interface RouteOptions {
  /** Absolute document root, already realpath'd by the caller. */
  root: string;
  /** Front controller, relative to the root ('index.php'). */
  index: string;
  /** Run an existing `*.php` named in the URL (and split PATH_INFO); off for Laravel-style apps. */
  phpScripts: boolean;
  /** Serve existing non-PHP files directly; off sends them to the front controller. */
  staticEnabled: boolean;
  /**
   * nginx recipe being reproduced (server.recipe); default 'laravel'. laravel and wordpress
   * use `try_files $uri $uri/ …`: a directory without the slash is redirected (301), one without
   * an index is 403. symfony uses `try_files $uri /index.php…`: directories go to the front
   * controller, another existing *.php is 404.
   */
  recipe?: 'laravel' | 'symfony' | 'wordpress' | 'generic';
  /** Serve static files through symlinks leaving the root (server.follow_symlinks). */
  followSymlinks?: boolean;
  /**
   * Where stat + realpath results come from (static.open_file_cache); without one every lookup
   * asks the file system. Answers may then be up to the cache's validity old.
   */
  fileCache?: OpenFileCache | null;
}

export type Route =
  | { kind: 'static'; filePath: string; stat: Stats }
  | {
      kind: 'php';
      scriptName: string;
      scriptFilename: string;
      pathInfo: string;
      documentUri: string;
    }
  | { kind: 'error'; status: 400 | 403 | 404; reason: string }
  /** nginx's 301 to the directory with a trailing slash; `location` is path-absolute, encoded. */
  | { kind: 'redirect'; location: string };

export interface ResolvedRoute {
  route: Route;
  /** Decoded, normalized path; for a 400 the raw (undecoded) path, for logs only. */
  path: string;
  /** Raw query string, without '?'. */
  query: string;
}

/**
 * Extensions that PHP may execute or whose source must stay private. Only an exact lowercase
 * `.php` is ever run (php-fpm's security.limit_extensions default); `X.PHP`, `.phtml`, `.phar`...
 * answer 404: serving them would leak source, running them is not what FPM allows.
 */
const PHP_SOURCE_EXTS = new Set([
  '.php',
  '.phtml',
  '.pht',
  '.phar',
  '.phps',
  '.php3',
  '.php4',
  '.php5',
  '.php6',
  '.php7',
  '.php8',
]);

/** WordPress's restriction on scripts among uploads. */
const UPLOADED_PHP_RE = /\/(?:uploads|files)\/.*\.php$/i;

/** WordPress's static-asset location (a miss there is 404, not the front controller). */
const STATIC_ASSET_RE = /\.(js|css|png|jpg|jpeg|gif|ico)$/i;

/** Absolute-form request-target ("http://host/path"), which RFC 9112 §3.2.2 says servers accept. */
const ABSOLUTE_FORM_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;
const HEX_RE = /^[0-9A-Fa-f]{2}$/;
/** C0 controls and DEL: NUL/CR/LF are the injection vectors (CVE-2019-11043), none is legitimate. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const error = (status: 400 | 403 | 404, reason: string): Route => ({
  kind: 'error',
  status,
  reason,
});

/**
 * Percent-decodes once into bytes, then UTF-8 (fatal: overlong forms such as %C0%AE and invalid
 * sequences are rejected rather than guessed). Returns undefined on any malformed input.
 * Raw bytes outside printable ASCII never reach here from node's parser; refuse them anyway.
 */
function decodePath(raw: string): string | undefined {
  if (!raw.includes('%')) {
    for (let i = 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i);
      if (c <= 0x20 || c >= 0x7f) return undefined;
    }
    return raw;
  }
  const bytes = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX_RE.test(hex)) return undefined;
      bytes[n++] = parseInt(hex, 16);
      i += 2;
    } else if (c <= 0x20 || c >= 0x7f) {
      return undefined;
    } else {
      bytes[n++] = c;
    }
  }
  try {
    return utf8.decode(bytes.subarray(0, n));
  } catch {
    return undefined;
  }
}

/**
 * nginx-style normalization (ngx_http_parse_complex_uri with merge_slashes on): duplicate
 * slashes merge, `.` disappears, `..` pops a segment. Runs after decoding, so `%2e%2e` and `%2f`
 * count as `..` and `/`. Returns undefined when `..` would climb above the root.
 * Backslashes are ordinary characters on Linux and are left alone.
 */
function normalizePath(decoded: string): string | undefined {
  const out: string[] = [];
  const parts = decoded.split('/');
  let trailingSlash = false;
  for (const part of parts) {
    trailingSlash = false;
    if (part === '' || part === '.') {
      trailingSlash = true;
    } else if (part === '..') {
      if (out.pop() === undefined) return undefined;
      trailingSlash = true;
    } else {
      out.push(part);
    }
  }
  if (out.length === 0) return '/';
  return '/' + out.join('/') + (trailingSlash ? '/' : '');
}

type Lookup = { kind: 'file' | 'dir'; real: string; stat: Stats } | { kind: 'absent' | 'outside' };

/** Errors that mean "no such file here" for try_files (nginx treats the same set as a miss). */
const MISS_CODES = new Set(['ENOENT', 'ENOTDIR', 'ENAMETOOLONG', 'ELOOP', 'EACCES']);

/**
 * stat + realpath of root+path. 'outside' when the realpath leaves the root (a symlink pointing
 * out); sockets, FIFOs and devices count as absent. Unexpected errors (EIO, EMFILE) propagate.
 * Synchronous on purpose (as nginx's open_file_cache-less stat is): a local stat costs 1-6 us,
 * the threadpool round trip of fs.promises 15-30 us of CPU plus two context switches
 * (docs/benchmarks.md, bench:proxy). A miss (the common front-controller case) throws nothing.
 */
function lookup(root: string, path: string, cache?: OpenFileCache | null): Lookup {
  if (cache != null) {
    const info = cache.lookup(joinRoot(root, path));
    if (info.kind === 'error') return { kind: 'absent' };
    if (!isUnder(root, info.real)) return { kind: 'outside' };
    if (info.kind === 'other') return { kind: 'absent' };
    return { kind: info.kind, real: info.real, stat: info.stat };
  }
  let real: string;
  let st: Stats | undefined;
  try {
    const candidate = joinRoot(root, path);
    st = statSync(candidate, { throwIfNoEntry: false });
    if (st === undefined) return { kind: 'absent' };
    real = realpathSync.native(candidate);
    if (!isUnder(root, real)) return { kind: 'outside' };
  } catch (err) {
    if (MISS_CODES.has((err as NodeJS.ErrnoException).code ?? '')) return { kind: 'absent' };
    throw err;
  }
  if (st.isFile()) return { kind: 'file', real, stat: st };
  if (st.isDirectory()) return { kind: 'dir', real, stat: st };
  return { kind: 'absent' };
}

/** lookup() for a path whose realpath leaves the root: a regular non-PHP file, or absent. */
function lookupFollowing(root: string, path: string, cache?: OpenFileCache | null): Lookup {
  if (cache != null) {
    const info = cache.lookup(joinRoot(root, path));
    if (info.kind === 'error') return { kind: 'absent' };
    if (info.kind !== 'file') return { kind: 'outside' };
    return { kind: 'file', real: info.real, stat: info.stat };
  }
  try {
    const candidate = joinRoot(root, path);
    const st = statSync(candidate, { throwIfNoEntry: false });
    if (st === undefined || !st.isFile()) return { kind: 'outside' };
    const real = realpathSync.native(candidate);
    return { kind: 'file', real, stat: st };
  } catch (err) {
    if (MISS_CODES.has((err as NodeJS.ErrnoException).code ?? '')) return { kind: 'absent' };
    throw err;
  }
}

function joinRoot(root: string, path: string): string {
  return root.endsWith('/') ? root + path.slice(1) : root + path;
}

function isUnder(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith('/') ? root : root + '/');
}

/** 'script': ends in exactly `.php`; 'source': another PHP extension in any case. */
function phpKind(name: string): 'script' | 'source' | 'none' {
  if (name.endsWith('.php')) return 'script';
  return PHP_SOURCE_EXTS.has(extname(name).toLowerCase()) ? 'source' : 'none';
}

/** The front controller (`server.index`) as a PHP route: what every try_files miss runs. */
export function frontControllerRoute(root: string, index: string): Extract<Route, { kind: 'php' }> {
  return {
    kind: 'php',
    scriptName: '/' + index,
    scriptFilename: joinRoot(root, '/' + index),
    pathInfo: '',
    documentUri: '/' + index,
  };
}

function phpRoute(root: string, scriptName: string, pathInfo: string, documentUri: string): Route {
  return {
    kind: 'php',
    scriptName,
    scriptFilename: joinRoot(root, scriptName),
    pathInfo,
    documentUri,
  };
}

/**
 * Resolves a request-target (as received: origin-form path with optional `?query`, or
 * absolute-form). Never throws for client input: malformed targets give an error route.
 * Rejects (with the fs error) only on unexpected file-system failures such as EIO or EMFILE.
 *
 * Decisions beyond nginx's recipe, all in the safe direction:
 * - any segment starting with '.' is 404 whether or not it exists (no existence oracle for
 *   `.env`, `.git`), except a first segment `.well-known`;
 * - an existing `*.php` with phpScripts off goes to the front controller (as a missing one does),
 *   so the answer does not reveal which scripts exist and the source is never sent;
 * - an existing file with another PHP extension (`.PHP`, `.phtml`, `.phar`, `.php5`...), or whose
 *   realpath has one (a symlink `a.txt -> b.php`), is 404;
 * - a directory runs its `index` only with phpScripts on; otherwise the front controller (no
 *   autoindex, no 301 to add the slash);
 * - a missing front controller still routes to PHP: FPM answers "Primary script unknown" (404),
 *   as behind nginx.
 */
export function resolveRoute(rawTarget: string, options: RouteOptions): Promise<ResolvedRoute> {
  try {
    return Promise.resolve(resolveRouteSync(rawTarget, options));
  } catch (err) {
    return Promise.reject(toError(err));
  }
}

/** resolveRoute without the promise (the file system is read synchronously, see lookup()). */
export function resolveRouteSync(rawTarget: string, options: RouteOptions): ResolvedRoute {
  let target = rawTarget;
  const hash = target.indexOf('#');
  if (hash !== -1) target = target.slice(0, hash); // a fragment is never part of the resource
  const qmark = target.indexOf('?');
  const query = qmark === -1 ? '' : target.slice(qmark + 1);
  let rawPath = qmark === -1 ? target : target.slice(0, qmark);
  const absolute = ABSOLUTE_FORM_RE.exec(rawPath);
  if (absolute !== null) rawPath = rawPath.slice(absolute[0].length) || '/';

  if (!rawPath.startsWith('/'))
    return { route: error(400, 'request-target is not a path'), path: rawPath, query };
  const decoded = decodePath(rawPath);
  if (decoded === undefined) {
    return { route: error(400, 'invalid percent-encoding or UTF-8 in path'), path: rawPath, query };
  }
  // Checked after decoding: %00 / %0a / %0d are how NUL, LF and CR get in (CVE-2019-11043).
  if (CONTROL_RE.test(decoded))
    return { route: error(400, 'control character in path'), path: rawPath, query };
  const path = normalizePath(decoded);
  if (path === undefined)
    return { route: error(400, 'path climbs above the document root'), path: rawPath, query };

  const route = routePath(path, options);
  if (route.kind === 'redirect') {
    // The client's own encoding of the path, plus the slash, plus its query (nginx keeps both).
    const location = rawPath + '/' + (qmark === -1 ? '' : '?' + query);
    return { route: { kind: 'redirect', location }, path, query };
  }
  return { route, path, query };
}

function routePath(path: string, options: RouteOptions): Route {
  const { root, phpScripts } = options;
  const index = options.index.replace(/^\/+/, '');
  const frontController = frontControllerRoute(root, index);

  const recipe = options.recipe ?? 'laravel';
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    // Laravel's recipe: location ~ /\.(?!well-known).* { deny all; } (403 whether it exists or
    // not: no oracle). Only the first segment may be .well-known; /.well-known/.git is still
    // hidden. WordPress's restrictions deny every dotfile, .well-known included.
    const wellKnown = i === 1 && segments[i] === '.well-known' && recipe !== 'wordpress';
    if (segments[i]?.startsWith('.') && !wellKnown) return error(403, 'dotfile');
  }
  if (recipe === 'wordpress' && UPLOADED_PHP_RE.test(path)) {
    // WordPress's restrictions: location ~* /(?:uploads|files)/.*\.php$ { deny all; } (an
    // uploaded script must never run).
    return error(403, 'PHP under uploads');
  }
  if (recipe === 'symfony' && (path === '/' + index || path.startsWith('/' + index + '/'))) {
    // Symfony's recipe marks the front controller `internal`: only try_files reaches it.
    return error(404, 'the front controller is internal');
  }

  let found = lookup(root, path, options.fileCache);
  if (found.kind === 'outside' && options.followSymlinks === true) {
    // nginx follows symlinks by default (Debian's WordPress links wp-includes/js outside the
    // root): allowed for static files only, never for a script.
    found = lookupFollowing(root, path, options.fileCache);
  }
  if (found.kind === 'outside') return error(404, 'symlink leaves the document root');
  if (found.kind === 'file' && recipe === 'symfony' && phpKind(path) === 'script') {
    // Symfony's recipe: location ~ \.php$ { return 404; } (only the front controller runs).
    return path === frontController.scriptName ? frontController : error(404, 'PHP script');
  }
  if (found.kind === 'file') {
    const kind = phpKind(path);
    if (kind === 'script') return phpScripts ? phpRoute(root, path, '', path) : frontController;
    if (kind === 'source' || phpKind(found.real) !== 'none') return error(404, 'PHP source');
    return options.staticEnabled
      ? { kind: 'static', filePath: found.real, stat: found.stat }
      : frontController;
  }
  if (found.kind === 'dir') {
    if (recipe === 'symfony') return frontController; // try_files $uri /index.php: no $uri/
    // try_files $uri/: the directory, with its trailing slash (301 when the URL lacks it).
    if (!path.endsWith('/')) return { kind: 'redirect', location: path + '/' };
    const scriptName = path + index;
    const dirIndex = lookup(root, scriptName, options.fileCache);
    if (dirIndex.kind === 'outside') return error(404, 'symlink leaves the document root');
    if (dirIndex.kind === 'file') {
      return phpScripts ? phpRoute(root, scriptName, '', scriptName) : frontController;
    }
    if (path === '/') return frontController;
    return error(403, 'directory index forbidden');
  }

  // laravel / symfony: location ~ ^/index\.php(/|$) splits PATH_INFO after the front controller.
  const fcPrefix = frontController.scriptName + '/';
  if (recipe === 'laravel' && !phpScripts && path.startsWith(fcPrefix)) {
    return phpRoute(root, frontController.scriptName, path.slice(fcPrefix.length - 1), path);
  }
  if (recipe === 'wordpress' && STATIC_ASSET_RE.test(path)) {
    // WordPress's recipe: location ~* \.(js|css|png|jpg|jpeg|gif|ico)$ has no fallback.
    return error(404, 'file not found');
  }

  // wordpress: location ~ \.php$ never matches a path continuing after the script, so nothing is
  // split there (the request goes to the front controller with an empty PATH_INFO).
  if (phpScripts && recipe !== 'wordpress') {
    // PATH_INFO: candidates are the prefixes ending at each ".php" followed by "/", left to right.
    // At most one can be a regular file (a file has no children), and the walk stops at the first
    // prefix that is not a directory, so a path full of ".php/" costs one stat per real directory.
    for (let at = path.indexOf('.php/'); at !== -1; at = path.indexOf('.php/', at + 1)) {
      const scriptName = path.slice(0, at + 4);
      const candidate = lookup(root, scriptName, options.fileCache);
      if (candidate.kind === 'outside') return error(404, 'symlink leaves the document root');
      if (candidate.kind === 'file') return phpRoute(root, scriptName, path.slice(at + 4), path);
      if (candidate.kind !== 'dir') break;
    }
  }
  return frontController;
}
