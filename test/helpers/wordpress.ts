/**
 * Debian's real WordPress (package `wordpress`, theme `wordpress-theme-twentytwentythree`) for the
 * WordPress tests: a private copy of the document root laid out as Debian lays it out, a
 * host-specific /etc/wordpress/config-<host>.php on a private MariaDB, an install by PHP CLI, and
 * a cookie-keeping HTTP client. Nothing of the installed package is modified; what a run adds
 * (its temp dir, its config file) it removes.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import type { TestMariaDb } from './mariadb.ts';
import { asPhpUser, givePhp } from './php-temp.ts';
import { readTextOr } from './process.ts';

const run = promisify(execFile);

/** Where Debian's package installs WordPress (its DocumentRoot). */
export const WORDPRESS_SHARE = '/usr/share/wordpress';
/** Debian's WP_CONTENT_DIR: uploads, and symlinks to the packaged themes and plugins. */
const DEBIAN_CONTENT = '/var/lib/wordpress/wp-content';
/** Debian reads the site's settings from config-<host>.php here (see its wp-config.php). */
const CONFIG_DIR = '/etc/wordpress';
const REQUIRED = [
  `${WORDPRESS_SHARE}/wp-settings.php`,
  `${WORDPRESS_SHARE}/wp-content/themes/twentytwentythree/style.css`,
  '/usr/share/doc/php-mysql',
];

/** Throws an Error naming the fix when a package the WordPress tests need is not installed. */
export function assertWordPressInstalled(): void {
  const missing = REQUIRED.filter((f) => !fs.existsSync(f));
  if (missing.length > 0) {
    throw new Error(
      `The WordPress tests need Debian's wordpress, wordpress-theme-twentytwentythree, php-mysql ` +
        `and mariadb-server; missing: ${missing.join(', ')}. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs them).`,
    );
  }
}

/**
 * A loopback address of its own (127.x.y.z: Linux routes all of 127/8 to lo) for one site: its
 * Host names its config file, so concurrent runs never share one, and PHP's loopback requests to
 * the site (the installer's permalink probe, wp-cron) reach it without DNS.
 */
export function privateLoopback(): string {
  return `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`;
}

/**
 * Copies Debian's WordPress to `<tmp>/share/wordpress` (cp -a: its relative symlinks such as
 * wp-includes/js/underscore.min.js -> ../../../javascript/… are kept as they are) and links the
 * directories they lead to (`<tmp>/share/javascript` -> /usr/share/javascript, …), so they leave
 * the root exactly as in /usr/share. Its wp-content is a copy of Debian's WP_CONTENT_DIR
 * (/var/lib/wordpress/wp-content: themes and plugins are symlinks to the packaged ones), as
 * Debian's recipe aliases /wp-content to it, owned by PHP's user for uploads. `tmp` must be
 * searchable by PHP's workers (phpTempDir). Resolves the root's path.
 */
export async function makeWordPressRoot(tmp: string): Promise<string> {
  const share = path.join(tmp, 'share');
  const root = path.join(share, 'wordpress');
  await mkdir(share, { recursive: true });
  await run('cp', ['-a', WORDPRESS_SHARE, share], { timeout: 60_000 });
  await rm(path.join(root, 'wp-content'), { recursive: true, force: true });
  await run('cp', ['-a', DEBIAN_CONTENT, path.join(root, 'wp-content')], { timeout: 60_000 });
  // PHP writes uploads there: Debian's package gives wp-content to www-data, and so does this
  // (cp -a keeps that owner only as root; givePhp does nothing when PHP runs as this user).
  await givePhp(path.join(root, 'wp-content'));

  const outside = new Set<string>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isSymbolicLink()) continue;
    const link = path.join(entry.parentPath, entry.name);
    const target = await readlink(link);
    if (path.isAbsolute(target)) continue;
    const original = path.join(WORDPRESS_SHARE, path.relative(root, link));
    const resolved = path.resolve(path.dirname(original), target);
    const fromShare = path.relative(path.dirname(WORDPRESS_SHARE), resolved);
    const top = fromShare.split(path.sep)[0];
    if (top !== undefined && top !== 'wordpress' && !fromShare.startsWith('..')) outside.add(top);
  }
  for (const top of outside) {
    await symlink(path.join(path.dirname(WORDPRESS_SHARE), top), path.join(share, top));
  }
  return root;
}

export interface WordPressConfigOptions {
  /** Document root made by makeWordPressRoot (WP_CONTENT_DIR is its wp-content). */
  root: string;
  /** The Host the site answers to, port included ("127.3.4.5:41234"). */
  host: string;
  db: TestMariaDb;
  /** `$table_prefix`, so two sites can share the database (default `wp_`). */
  tablePrefix?: string;
  /** Where WordPress's debug.log goes: a directory PHP's user may write (givePhp). */
  logDir: string;
}

export interface WordPressConfig {
  /** /etc/wordpress/config-<host>.php. */
  readonly file: string;
  /** WordPress's debug.log (PHP notices and errors of the site) so far. */
  debugLog(): string;
  /** Removes the config file. Idempotent. */
  remove(): Promise<void>;
}

const phpString = (s: string): string => `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/**
 * Writes the host-specific config Debian's wp-config.php loads for `host` (its name without the
 * port, lower-cased, as wp-config.php derives it): the private database over its socket, fresh
 * salts, WP_CONTENT_DIR in the copied root (ABSPATH is the root: wp-load.php sets it), no
 * auto-updates, no requests to wordpress.org (loopback requests to the site itself stay
 * allowed), errors to debug.log only. Throws when that file exists: it is never overwritten.
 */
export async function writeWordPressConfig(
  options: WordPressConfigOptions,
): Promise<WordPressConfig> {
  const name = options.host
    .replace(/:.*/, '')
    .replace(/[^a-zA-Z0-9.-]/g, '')
    .toLowerCase();
  const file = path.join(CONFIG_DIR, `config-${name}.php`);
  const debugLog = path.join(options.logDir, `wordpress-${name}.log`);
  const define = (key: string, value: string | boolean): string =>
    `define(${phpString(key)}, ${typeof value === 'boolean' ? String(value) : phpString(value)});`;
  const salts = [
    'AUTH_KEY',
    'SECURE_AUTH_KEY',
    'LOGGED_IN_KEY',
    'NONCE_KEY',
    'AUTH_SALT',
    'SECURE_AUTH_SALT',
    'LOGGED_IN_SALT',
    'NONCE_SALT',
  ].map((k) => define(k, randomBytes(32).toString('base64')));
  const php = [
    '<?php',
    '// Written by askr-sidecar test/helpers/wordpress.ts for one test run, removed after it.',
    define('DB_NAME', options.db.database),
    define('DB_USER', options.db.user),
    define('DB_PASSWORD', options.db.password),
    define('DB_HOST', `localhost:${options.db.socket}`),
    define('DB_CHARSET', 'utf8mb4'),
    define('DB_COLLATE', ''),
    `$table_prefix = ${phpString(options.tablePrefix ?? 'wp_')};`,
    ...salts,
    define('WP_CONTENT_DIR', path.join(options.root, 'wp-content')),
    define('AUTOMATIC_UPDATER_DISABLED', true),
    define('WP_AUTO_UPDATE_CORE', false),
    define('WP_HTTP_BLOCK_EXTERNAL', true),
    define('FS_METHOD', 'direct'),
    define('WP_DEBUG', true),
    define('WP_DEBUG_DISPLAY', false),
    define('WP_DEBUG_LOG', debugLog),
    '',
  ].join('\n');
  await writeFile(file, php, { flag: 'wx', mode: 0o644 });
  let removed = false;
  return {
    file,
    debugLog: () => readTextOr(debugLog, '(WordPress wrote no debug.log)'),
    async remove(): Promise<void> {
      if (removed) return;
      removed = true;
      await rm(file, { force: true });
    },
  };
}

export interface WordPressAdmin {
  user: string;
  password: string;
  email: string;
}

// Runs wp_install() as wp-admin/install.php does, for the site at $url, without its loopback
// permalink probe (set afterwards) and without the "new site" mail.
const INSTALL_PHP = `
[, $root, $url, $title, $user, $password, $email, $structure] = $argv;
$u = parse_url($url);
$_SERVER['HTTP_HOST'] = $u['host'] . ':' . $u['port'];
$_SERVER['SERVER_NAME'] = $u['host'];
$_SERVER['SERVER_PORT'] = (string) $u['port'];
$_SERVER['REQUEST_URI'] = '/wp-admin/install.php';
define('WP_INSTALLING', true);
require $root . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (is_blog_installed()) { fwrite(STDERR, "already installed\\n"); exit(1); }
add_filter('pre_wp_mail', '__return_false');
$skip_probe = fn () => $structure;
add_filter('pre_option_permalink_structure', $skip_probe);
$result = wp_install($title, $user, $email, false, '', wp_slash($password));
remove_filter('pre_option_permalink_structure', $skip_probe);
update_option('siteurl', $url);
update_option('home', $url);
$GLOBALS['wp_rewrite']->set_permalink_structure($structure);
flush_rewrite_rules(false);
echo json_encode(['user_id' => $result['user_id'], 'permalink_structure' => get_option('permalink_structure')]);
`;

/**
 * Installs the site whose config names `url`'s host with PHP CLI (wp_install(), as the installer
 * does) as PHP's workers run (asPhpUser, as `sudo -u www-data wp core install`: what it writes,
 * debug.log included, stays theirs), then sets siteurl/home to `url` and `permalinkStructure`.
 * Independent of the server in front: the tests of the web installer use a site of their own.
 * Rejects with PHP's output.
 */
export async function installWordPress(
  root: string,
  url: string,
  title: string,
  admin: WordPressAdmin,
  permalinkStructure: string,
): Promise<void> {
  const args = [root, url, title, admin.user, admin.password, admin.email, permalinkStructure];
  try {
    const { stdout } = await run('php', ['-r', INSTALL_PHP, '--', ...args], {
      timeout: 60_000,
      ...asPhpUser(),
    });
    const result = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, unknown>;
    if (result['permalink_structure'] !== permalinkStructure) {
      throw new Error(`permalink_structure is ${JSON.stringify(result['permalink_structure'])}`);
    }
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(
      `installing WordPress with PHP CLI failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`,
      { cause: err },
    );
  }
}

export interface WpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

export interface WpRequest {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as application/x-www-form-urlencoded. */
  form?: Record<string, string>;
  /** Sent as application/json. */
  json?: unknown;
  body?: Buffer | string;
}

/**
 * An HTTP client for one site that keeps its cookies as a browser would for these tests (every
 * cookie goes with every request, whatever its Path) and never follows redirects.
 */
export class WpBrowser {
  readonly cookies = new Map<string, string>();
  /** "http://127.x.y.z:PORT": the site's URL, also the base of relative targets. */
  readonly baseUrl: string;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  /** `target` is a path ("/wp-login.php") or an absolute URL of this site. */
  async fetch(target: string, req: WpRequest = {}): Promise<WpResponse> {
    const url = new URL(target, this.baseUrl);
    const headers: Record<string, string> = { ...req.headers };
    let body = req.body;
    if (req.form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(req.form).toString();
    } else if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    }
    if (this.cookies.size > 0) {
      headers['cookie'] = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const res = await request(url, {
      method: (req.method ?? (body === undefined ? 'GET' : 'POST')) as 'GET',
      headers,
      ...(body === undefined ? {} : { body }),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const buffer = Buffer.from(await res.body.arrayBuffer());
    this.remember(res.headers['set-cookie']);
    return {
      status: res.statusCode,
      headers: res.headers,
      body: buffer,
      text: buffer.toString('utf8'),
    };
  }

  private remember(setCookie: string | string[] | undefined): void {
    for (const line of setCookie === undefined ? [] : [setCookie].flat()) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const expires = attributes
        .map((a) => a.trim())
        .find((a) => a.toLowerCase().startsWith('expires='));
      // WordPress clears a cookie by sending it again, expired a year ago.
      if (expires !== undefined && Date.parse(expires.slice(8)) < Date.now()) {
        this.cookies.delete(name);
      } else {
        this.cookies.set(name, pair.slice(eq + 1).trim());
      }
    }
  }

  /**
   * Logs in through wp-login.php as a browser does (GET sets the test cookie, POST the form).
   * Resolves the POST's response: 302 with the auth cookies when it worked.
   */
  async login(admin: WordPressAdmin): Promise<WpResponse> {
    await this.fetch('/wp-login.php');
    return this.fetch('/wp-login.php', {
      form: {
        log: admin.user,
        pwd: admin.password,
        'wp-submit': 'Log In',
        redirect_to: new URL('/wp-admin/', this.baseUrl).href,
        testcookie: '1',
      },
    });
  }

  /** A wp_rest nonce for cookie-authenticated REST calls (admin-ajax.php?action=rest-nonce). */
  async restNonce(): Promise<string> {
    const res = await this.fetch('/wp-admin/admin-ajax.php?action=rest-nonce');
    if (res.status !== 200 || !/^[0-9a-f]{10}$/.test(res.text)) {
      throw new Error(`no REST nonce: ${summarize(res)}`);
    }
    return res.text;
  }
}

/** Status, headers and the start of the body of `res`, for assertion messages and reports. */
export function summarize(res: WpResponse, bodyChars = 600): string {
  return `${res.status} ${JSON.stringify(res.headers)}\n${res.text.slice(0, bodyChars)}`;
}
