// Routing against a real temp document root (with symlinks pointing in and out of it).
// A regression here looks like: a file outside the root served, PHP source sent as static, a
// dotfile (.env) reachable, or PHP run on a path that is not an existing .php script.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveRoute, type RouteOptions } from './route-resolver.ts';

let base: string;
let root: string;

const FILES = [
  'index.php',
  'admin.php',
  'robots.txt',
  'a b.txt',
  'café.txt',
  'back\\slash.txt',
  'legacy.PHP',
  'shell.phtml',
  'tool.phar',
  'old.php5',
  '.env',
  '.git/config',
  '.well-known/acme-challenge/token',
  '.well-known/.secret',
  'uploads/x.jpg',
  'uploads/evil.jpg',
  'sub/index.php',
  'noindex/readme.txt',
  'dir.php/inner.php',
];

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'askr-route-')));
  root = join(base, 'public');
  for (const f of FILES) {
    await mkdir(join(root, f, '..'), { recursive: true });
    await writeFile(join(root, f), f);
  }
  await mkdir(join(base, 'outside'));
  await writeFile(join(base, 'outside', 'secret.txt'), 'secret');
  await writeFile(join(base, 'outside', 'x.php'), '<?php');
  await symlink(join(base, 'outside', 'secret.txt'), join(root, 'link-out'));
  await symlink(join(base, 'outside'), join(root, 'linkdir-out'));
  await symlink(join(base, 'outside', 'x.php'), join(root, 'script-out.php'));
  await symlink('robots.txt', join(root, 'link-in.txt'));
  await symlink('admin.php', join(root, 'img.txt'));
  execFileSync('mkfifo', [join(root, 'pipe')]);
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

interface Case {
  name: string;
  target: string;
  opts?: Partial<RouteOptions>;
  /** Expected route; `$root` in strings is replaced by the temp root. */
  route: Record<string, unknown>;
  path?: string;
  query?: string;
}

const front = {
  kind: 'php',
  scriptName: '/index.php',
  scriptFilename: '$root/index.php',
  pathInfo: '',
  documentUri: '/index.php',
};
const php = { phpScripts: true };
const e400 = { kind: 'error', status: 400 };
const e404 = { kind: 'error', status: 404 };
/** Dotfiles: Laravel's `deny all` (403), existing or not. */
const e403 = { kind: 'error', status: 403 };
const staticFile = (rel: string): Record<string, unknown> => ({
  kind: 'static',
  filePath: `$root/${rel}`,
});

const cases: Case[] = [
  { name: 'root goes to the front controller', target: '/', route: front, path: '/' },
  {
    name: 'root with phpScripts runs root index (same script)',
    target: '/',
    opts: php,
    route: front,
  },
  { name: 'existing file is static', target: '/robots.txt', route: staticFile('robots.txt') },
  {
    name: 'query is split off raw',
    target: '/robots.txt?a=%20b&c',
    route: staticFile('robots.txt'),
    query: 'a=%20b&c',
  },
  {
    name: 'fragment is ignored',
    target: '/robots.txt#top',
    route: staticFile('robots.txt'),
    query: '',
  },
  {
    name: 'duplicate slashes merge',
    target: '//robots.txt',
    route: staticFile('robots.txt'),
    path: '/robots.txt',
  },
  {
    name: 'dot segments normalize',
    target: '/./sub/../robots.txt',
    route: staticFile('robots.txt'),
    path: '/robots.txt',
  },
  {
    name: 'encoded dots normalize inside root',
    target: '/sub/%2e%2E/robots.txt',
    route: staticFile('robots.txt'),
  },
  { name: 'percent-encoded space', target: '/a%20b.txt', route: staticFile('a b.txt') },
  {
    name: 'UTF-8 name',
    target: '/caf%C3%A9.txt',
    route: staticFile('café.txt'),
    path: '/café.txt',
  },
  {
    name: 'backslash is not a separator (encoded)',
    target: '/back%5Cslash.txt',
    route: staticFile('back\\slash.txt'),
  },
  {
    name: 'backslash is not a separator (raw)',
    target: '/back\\slash.txt',
    route: staticFile('back\\slash.txt'),
  },
  {
    name: 'absolute-form target',
    target: 'http://example.com/robots.txt?q',
    route: staticFile('robots.txt'),
    query: 'q',
  },
  { name: 'absolute-form without path', target: 'http://example.com', route: front, path: '/' },
  {
    name: 'missing path goes to the front controller',
    target: '/users/42?tab=1',
    route: front,
    path: '/users/42',
    query: 'tab=1',
  },
  {
    name: 'static disabled sends files to PHP',
    target: '/robots.txt',
    opts: { staticEnabled: false },
    route: front,
  },
  { name: 'a FIFO is not a file', target: '/pipe', route: front },
  { name: 'trailing slash on a file is not the file', target: '/robots.txt/', route: front },

  // Malformed targets.
  { name: 'origin-form must start with /', target: 'robots.txt', route: e400 },
  { name: 'asterisk-form', target: '*', route: e400 },
  { name: 'bad percent-encoding', target: '/%zz', route: e400, path: '/%zz' },
  { name: 'truncated percent-encoding', target: '/a%4', route: e400 },
  { name: 'invalid UTF-8', target: '/%ff', route: e400 },
  { name: 'overlong UTF-8 dot (%C0%AE)', target: '/%C0%AE%C0%AE/etc/passwd', route: e400 },
  { name: 'raw space', target: '/a b.txt', route: e400 },
  { name: 'raw non-ASCII', target: '/café.txt', route: e400 },

  // Security regressions.
  { name: 'regression: NUL in path is 400', target: '/robots.txt%00.php', route: e400 },
  { name: 'regression: LF in path is 400', target: '/index.php%0a', route: e400 },
  { name: 'regression: CR in path is 400', target: '/x%0dSet-Cookie:a=b', route: e400 },
  { name: 'regression: other control characters are 400', target: '/x%09y', route: e400 },
  {
    name: 'regression: CVE-2019-11043 /index.php/%0a is 400',
    target: '/index.php/%0a',
    opts: php,
    route: e400,
  },
  { name: 'regression: traversal /../etc/passwd is 400', target: '/../etc/passwd', route: e400 },
  { name: 'regression: traversal %2e%2e is 400', target: '/%2e%2e/etc/passwd', route: e400 },
  { name: 'regression: traversal %2E%2E%2F is 400', target: '/..%2Fetc%2Fpasswd', route: e400 },
  {
    name: 'regression: traversal after a segment is 400',
    target: '/sub/../../etc/passwd',
    route: e400,
  },
  { name: 'regression: trailing .. above root is 400', target: '/..', route: e400 },
  {
    name: 'regression: double-encoded dots stay literal (decoded once)',
    target: '/%252e%252e/etc/passwd',
    route: front,
    path: '/%2e%2e/etc/passwd',
  },
  { name: 'regression: dotfile .env is 403', target: '/.env', route: e403 },
  { name: 'regression: dotfile in a directory is 403', target: '/.git/config', route: e403 },
  {
    name: 'regression: missing dotfile is 403 too (no existence oracle)',
    target: '/sub/.htpasswd',
    route: e403,
  },
  { name: 'regression: encoded dotfile is 403', target: '/%2eenv', route: e403 },
  {
    name: 'regression: .well-known is served',
    target: '/.well-known/acme-challenge/token',
    route: staticFile('.well-known/acme-challenge/token'),
  },
  {
    name: 'regression: missing .well-known goes to PHP',
    target: '/.well-known/openid-configuration',
    route: front,
  },
  {
    name: 'regression: dotfile under .well-known is 403',
    target: '/.well-known/.secret',
    route: e403,
  },
  {
    name: 'regression: .well-known only as first segment',
    target: '/sub/.well-known/x',
    route: e403,
  },
  { name: 'regression: symlink to a file outside root is 404', target: '/link-out', route: e404 },
  {
    name: 'regression: path through a symlinked dir outside root is 404',
    target: '/linkdir-out/secret.txt',
    route: e404,
  },
  {
    name: 'regression: symlinked script outside root is 404',
    target: '/script-out.php',
    opts: php,
    route: e404,
  },
  {
    name: 'regression: symlinked script outside root is 404 as PATH_INFO prefix',
    target: '/script-out.php/x',
    opts: php,
    route: e404,
  },
  {
    name: 'symlink inside root serves its target',
    target: '/link-in.txt',
    route: staticFile('robots.txt'),
  },
  {
    name: 'regression: innocent name linking to PHP source is 404',
    target: '/img.txt',
    route: e404,
  },

  // PHP sources and scripts.
  {
    name: 'existing .php with phpScripts off goes to the front controller',
    target: '/admin.php',
    route: front,
  },
  {
    name: 'missing .php goes to the front controller',
    target: '/missing.php',
    opts: php,
    route: front,
  },
  {
    name: 'existing .php with phpScripts on runs it',
    target: '/admin.php?x=1',
    opts: php,
    route: {
      kind: 'php',
      scriptName: '/admin.php',
      scriptFilename: '$root/admin.php',
      pathInfo: '',
      documentUri: '/admin.php',
    },
    query: 'x=1',
  },
  { name: 'regression: uppercase .PHP is never served', target: '/legacy.PHP', route: e404 },
  {
    name: 'regression: uppercase .PHP is never run',
    target: '/legacy.PHP',
    opts: php,
    route: e404,
  },
  { name: 'regression: .phtml is never served', target: '/shell.phtml', route: e404 },
  { name: 'regression: .phar is never served', target: '/tool.phar', route: e404 },
  { name: 'regression: .php5 is never served', target: '/old.php5', route: e404 },

  // Directories.
  {
    name: 'directory with index runs it (phpScripts on)',
    target: '/sub/',
    opts: php,
    route: {
      kind: 'php',
      scriptName: '/sub/index.php',
      scriptFilename: '$root/sub/index.php',
      pathInfo: '',
      documentUri: '/sub/index.php',
    },
  },
  {
    // nginx try_files $uri/: the directory with its slash, by a 301 (relative links then work).
    name: 'directory without trailing slash is redirected to add it',
    target: '/sub',
    opts: php,
    route: { kind: 'redirect', location: '/sub/' },
  },
  {
    name: 'the redirect keeps the query',
    target: '/sub?x=1',
    route: { kind: 'redirect', location: '/sub/?x=1' },
  },
  {
    name: 'directory with index goes to the front controller (phpScripts off)',
    target: '/sub/',
    route: front,
  },
  {
    // nginx: try_files $uri/ matches, the index module finds no index, autoindex off: 403.
    name: 'directory without index is 403',
    target: '/noindex/',
    opts: php,
    route: { kind: 'error', status: 403 },
  },
  {
    // WordPress's restrictions.conf: an uploaded script never runs, existing or not.
    name: 'wordpress recipe: PHP under uploads/ is 403',
    target: '/wp-content/uploads/2026/shell.php',
    opts: { recipe: 'wordpress', phpScripts: true },
    route: { kind: 'error', status: 403 },
  },
  {
    name: 'symfony recipe: a directory goes to the front controller (no $uri/)',
    target: '/noindex',
    opts: { recipe: 'symfony' },
    route: front,
  },

  // PATH_INFO.
  {
    name: 'PATH_INFO split at an existing script',
    target: '/index.php/foo/bar?q=1',
    opts: php,
    route: {
      kind: 'php',
      scriptName: '/index.php',
      scriptFilename: '$root/index.php',
      pathInfo: '/foo/bar',
      documentUri: '/index.php/foo/bar',
    },
    query: 'q=1',
  },
  {
    name: 'PATH_INFO of a lone slash',
    target: '/index.php/',
    opts: php,
    route: { kind: 'php', scriptName: '/index.php', pathInfo: '/' },
  },
  {
    // Laravel/Symfony: location ~ ^/index\.php(/|$) splits after the front controller.
    name: 'PATH_INFO after the front controller with phpScripts off',
    target: '/index.php/foo',
    route: { kind: 'php', scriptName: '/index.php', pathInfo: '/foo' },
  },
  {
    name: 'PATH_INFO is decoded',
    target: '/admin.php/a%20b',
    opts: php,
    route: { kind: 'php', scriptName: '/admin.php', pathInfo: '/a b' },
  },
  {
    name: 'split skips a directory named *.php',
    target: '/dir.php/inner.php/extra',
    opts: php,
    route: {
      kind: 'php',
      scriptName: '/dir.php/inner.php',
      pathInfo: '/extra',
      documentUri: '/dir.php/inner.php/extra',
    },
  },
  {
    name: 'regression: CVE-2019-11043 /uploads/x.jpg/a.php never runs x.jpg',
    target: '/uploads/x.jpg/a.php',
    opts: php,
    route: front,
  },
  {
    name: 'regression: /uploads/evil.jpg/x.php/y never runs evil.jpg',
    target: '/uploads/evil.jpg/x.php/y',
    opts: php,
    route: front,
  },
  {
    name: 'regression: no split on a missing script',
    target: '/missing.php/x',
    opts: php,
    route: front,
  },
  {
    name: 'regression: no split at uppercase .PHP',
    target: '/legacy.PHP/x',
    opts: php,
    route: front,
  },
  {
    name: 'regression: no split at .php without slash',
    target: '/admin.phpx/y',
    opts: php,
    route: front,
  },
  {
    name: 'missing front controller still routes to PHP',
    target: '/anything',
    opts: { index: 'app.php' },
    route: {
      kind: 'php',
      scriptName: '/app.php',
      scriptFilename: '$root/app.php',
      pathInfo: '',
      documentUri: '/app.php',
    },
  },
];

function withRoot(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      typeof v === 'string' ? v.replace('$root', root) : v,
    ]),
  );
}

describe('resolveRoute', () => {
  it.each(cases)('$name: $target', async (c) => {
    const options: RouteOptions = {
      root,
      index: 'index.php',
      phpScripts: false,
      staticEnabled: true,
      ...c.opts,
    };
    const result = await resolveRoute(c.target, options);
    expect(result.route).toMatchObject(withRoot(c.route));
    if (c.path !== undefined) expect(result.path).toBe(c.path);
    if (c.query !== undefined) expect(result.query).toBe(c.query);
  });

  it('static routes carry the stat of the real file', async () => {
    const { route } = await resolveRoute('/link-in.txt', {
      root,
      index: 'index.php',
      phpScripts: false,
      staticEnabled: true,
    });
    expect(route.kind).toBe('static');
    if (route.kind === 'static') {
      expect(route.stat.isFile()).toBe(true);
      expect(route.stat.size).toBe('robots.txt'.length);
    }
  });

  it('a path full of ".php/" segments costs no more than the real directories', async () => {
    const target = '/x.php/'.repeat(2000) + 'y';
    const { route } = await resolveRoute(target, {
      root,
      index: 'index.php',
      phpScripts: true,
      staticEnabled: true,
    });
    expect(route).toMatchObject(withRoot(front));
  });
});
