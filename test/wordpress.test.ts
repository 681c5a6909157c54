/**
 * WordPress behind the sidecar as behind nginx (issue "A drop-in for nginx's PHP recipes"): the
 * real WordPress of Debian's `wordpress` package (a private copy of /usr/share/wordpress with its
 * symlinks leaving the root, Debian's wp-content layout, /etc/wordpress/config-<host>.php) on a
 * real MariaDB and an external php-fpm pool, behind a sidecar with `server.recipe = "wordpress"`.
 * Each test names the nginx behaviour WordPress relies on; a regression shows as that behaviour
 * breaking: the installer falling back to ugly permalinks, a post's permalink answering 404, a
 * directory listed or run through PHP instead of 403, an asset behind a symlink answering 404, a
 * Range request answering 200, the REST API answering HTML.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFpmPool, type FpmPool } from './helpers/fpm-pool.ts';
import { startMariaDb, type TestMariaDb } from './helpers/mariadb.ts';
import { givePhp, phpTempDir } from './helpers/php-temp.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';
import {
  assertWordPressInstalled,
  installWordPress,
  makeWordPressRoot,
  privateLoopback,
  summarize,
  writeWordPressConfig,
  WpBrowser,
  type WordPressAdmin,
  type WordPressConfig,
  type WpResponse,
} from './helpers/wordpress.ts';

/** What a WordPress site behind nginx needs from the sidecar; nothing else is set. */
const WORDPRESS_SETTINGS = {
  'server.recipe': 'wordpress',
  'server.follow_symlinks': 'true',
};
const TITLE = 'Askr WordPress';
const ADMIN: WordPressAdmin = {
  user: 'admin',
  password: `pw-${randomBytes(8).toString('hex')}`,
  email: 'admin@example.test',
};

let tmp = '';
/** `<tmp>/logs`, PHP's own: WordPress's debug.log files. */
let logDir = '';
let root = '';
let db: TestMariaDb | undefined;
let fpm: FpmPool | undefined;
const cleanups: Array<() => Promise<void>> = [];
/** The site installed with PHP CLI that most tests use. */
let site: { sidecar: TestSidecar; config: WordPressConfig; url: string } | undefined;

/** A sidecar with WORDPRESS_SETTINGS for `root` on a loopback address of its own. */
async function startSite(): Promise<TestSidecar> {
  if (fpm === undefined) throw new Error('php-fpm did not start');
  const sidecar = await startTestSidecar({
    'server.listen': `${privateLoopback()}:0`,
    'server.root': root,
    'fastcgi.address': fpm.address,
    ...WORDPRESS_SETTINGS,
  });
  cleanups.push(() => sidecar.close());
  return sidecar;
}

async function addConfig(sidecar: TestSidecar, tablePrefix: string): Promise<WordPressConfig> {
  if (db === undefined) throw new Error('MariaDB did not start');
  const config = await writeWordPressConfig({
    root,
    host: new URL(sidecar.url).host,
    db,
    tablePrefix,
    logDir,
  });
  cleanups.push(() => config.remove());
  return config;
}

beforeAll(async () => {
  assertWordPressInstalled();
  tmp = await phpTempDir('askr-wordpress-');
  logDir = join(tmp, 'logs');
  await mkdir(logDir);
  await givePhp(logDir);
  [db, fpm, root] = await Promise.all([
    startMariaDb(),
    startFpmPool({ pm: 'static', maxChildren: 4 }),
    makeWordPressRoot(tmp),
  ]);
  const sidecar = await startSite();
  const config = await addConfig(sidecar, 'wp_');
  await installWordPress(root, sidecar.url, TITLE, ADMIN, '/%postname%/');
  site = { sidecar, config, url: sidecar.url };
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await fpm?.stop();
  await db?.stop();
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

function wp(): NonNullable<typeof site> {
  if (site === undefined) throw new Error('the WordPress site was not set up');
  return site;
}

/** What a failing assertion prints: the response, WordPress's debug.log and php-fpm's log. */
function report(res: WpResponse, config: WordPressConfig | undefined = site?.config): string {
  const debugLog = config?.debugLog().slice(-2000) ?? '(no site)';
  const fpmLog = fpm?.log().slice(-2000) ?? '(no php-fpm)';
  return `${summarize(res)}\n--- WordPress debug.log:\n${debugLog}\n--- php-fpm:\n${fpmLog}`;
}

let adminBrowser: Promise<{ browser: WpBrowser; nonce: string }> | undefined;
/** One logged-in admin (cookies and a REST nonce) shared by the tests that need one. */
function loggedIn(): Promise<{ browser: WpBrowser; nonce: string }> {
  adminBrowser ??= (async () => {
    const browser = new WpBrowser(wp().url);
    const res = await browser.login(ADMIN);
    if (res.status !== 302) throw new Error(`login failed: ${report(res)}`);
    return { browser, nonce: await browser.restNonce() };
  })();
  return adminBrowser;
}

/** A `size`×`size` PNG of random pixels (incompressible: Range requests have bytes to cut). */
function randomPng(size: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const rows = Buffer.concat(
    Array.from({ length: size }, () => Buffer.concat([Buffer.from([0]), randomBytes(size * 3)])),
  );
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('WordPress (Debian package, MariaDB) behind the sidecar with the wordpress recipe', () => {
  it('the web installer (wp-admin/install.php?step=2) installs a site and turns on pretty permalinks', async () => {
    // A site of its own: same root, its own Host (so its own config-<host>.php) and table prefix.
    const sidecar = await startSite();
    const config = await addConfig(sidecar, 'inst_');
    const seen = (res: WpResponse): string => report(res, config);
    const browser = new WpBrowser(sidecar.url);
    const form = await browser.fetch('/wp-admin/install.php');
    expect(form.status, seen(form)).toBe(200);
    expect(form.text, seen(form)).toContain('name="weblog_title"');

    const done = await browser.fetch('/wp-admin/install.php?step=2', {
      form: {
        weblog_title: 'Installed through the sidecar',
        user_name: 'installer',
        admin_password: ADMIN.password,
        admin_password2: ADMIN.password,
        pw_weak: '1',
        admin_email: 'installer@example.test',
        blog_public: '0',
        language: '',
      },
    });
    expect(done.status, seen(done)).toBe(200);
    expect(done.text, seen(done)).toContain('WordPress has been installed');

    // The installer probes siteurl + /YYYY/MM/DD/hello-world/ from PHP through the server
    // (try_files to index.php) and keeps that structure only when it answers with X-Pingback;
    // otherwise it falls back to /index.php/… or ?p=1 links. siteurl is wp_guess_url(): scheme
    // and HTTP_HOST (the port included) of this request.
    const home = await browser.fetch('/');
    expect(home.status, seen(home)).toBe(200);
    const pretty = new RegExp(`href="(${sidecar.url}/\\d{4}/\\d{2}/\\d{2}/hello-world/)"`);
    const link = pretty.exec(home.text)?.[1];
    if (link === undefined) {
      const links = home.text.match(/href="[^"]*hello-world[^"]*"|href="[^"]*\?p=1"/g);
      expect.fail(
        `no pretty permalink to Hello world! on the front page: ${String(links)}\n${seen(home)}`,
      );
    }
    const post = await browser.fetch(link);
    expect(post.status, seen(post)).toBe(200);
    expect(post.text, seen(post)).toContain('Hello world!');
  });

  it('logging in through wp-login.php sets the auth cookies and opens the dashboard', async () => {
    const browser = new WpBrowser(wp().url);
    const res = await browser.login(ADMIN);
    expect(res.status, report(res)).toBe(302);
    expect(new URL(String(res.headers['location']), wp().url).pathname, report(res)).toBe(
      '/wp-admin/',
    );
    expect([...browser.cookies.keys()].some((k) => k.startsWith('wordpress_logged_in_'))).toBe(
      true,
    );
    const dashboard = await browser.fetch('/wp-admin/');
    expect(dashboard.status, report(dashboard)).toBe(200);
    expect(dashboard.text, report(dashboard)).toContain('<title>Dashboard');
  });

  it('Settings > Permalinks sees nginx (SERVER_SOFTWARE) and offers permalinks without /index.php', async () => {
    const { browser } = await loggedIn();
    const res = await browser.fetch('/wp-admin/options-permalink.php');
    expect(res.status, report(res)).toBe(200);
    // $is_nginx: WordPress links its nginx documentation; without URL rewriting it would prefix
    // every structure offered with /index.php.
    expect(res.text, report(res)).toContain('Documentation on Nginx configuration');
    expect(res.text, report(res)).not.toContain('/index.php/%year%');
  });

  it('a post with a non-ASCII slug is served at its pretty permalink, however its escapes are cased', async () => {
    const { browser, nonce } = await loggedIn();
    const title = 'Askr 東京 ночь';
    const created = await browser.fetch('/wp-json/wp/v2/posts', {
      headers: { 'x-wp-nonce': nonce },
      json: { title, content: 'Served through the sidecar.', status: 'publish' },
    });
    expect(created.status, report(created)).toBe(201);
    const { link, slug } = JSON.parse(created.text) as { link: string; slug: string };
    expect(slug).toBe('askr-%e6%9d%b1%e4%ba%ac-%d0%bd%d0%be%d1%87%d1%8c');
    expect(new URL(link).pathname).toBe(`/${slug}/`);

    const post = await browser.fetch(link);
    expect(post.status, report(post)).toBe(200);
    expect(post.text, report(post)).toContain(title);
    // A browser given the title as typed sends upper-case escapes.
    const typed = await browser.fetch(`/${encodeURIComponent('askr-東京-ночь')}/`);
    expect(typed.status, report(typed)).toBe(200);
    expect(typed.text, report(typed)).toContain(title);
  });

  it('/wp-admin answers 301 to /wp-admin/ (a directory without its slash)', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-admin');
    expect(res.status, report(res)).toBe(301);
    const location = new URL(String(res.headers['location']), wp().url);
    expect(location.href, report(res)).toBe(`${wp().url}/wp-admin/`);
  });

  it('/wp-content/uploads/ (a directory without an index) answers 403', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-content/uploads/');
    expect(res.status, report(res)).toBe(403);
  });

  it('a media upload through the REST API is served from wp-content/uploads, and a Range request of it answers 206', async () => {
    const { browser, nonce } = await loggedIn();
    const png = randomPng(64);
    const created = await browser.fetch('/wp-json/wp/v2/media', {
      headers: {
        'x-wp-nonce': nonce,
        'content-type': 'image/png',
        'content-disposition': 'attachment; filename="askr-range.png"',
      },
      body: png,
    });
    expect(created.status, report(created)).toBe(201);
    const { source_url: sourceUrl } = JSON.parse(created.text) as { source_url: string };
    expect(sourceUrl).toMatch(new RegExp(`^${wp().url}/wp-content/uploads/\\d{4}/\\d{2}/`));

    const whole = await browser.fetch(sourceUrl);
    expect(whole.status, report(whole)).toBe(200);
    expect(whole.headers['content-type']).toBe('image/png');
    expect(whole.body.equals(png)).toBe(true);

    const part = await browser.fetch(sourceUrl, { headers: { range: 'bytes=100-1123' } });
    expect(part.status, report(part)).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 100-1123/${png.length}`);
    expect(part.body.equals(png.subarray(100, 1124))).toBe(true);
  });

  it('the REST API root /wp-json/ answers JSON (pretty permalinks route it to index.php)', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-json/');
    expect(res.status, report(res)).toBe(200);
    expect(String(res.headers['content-type']), report(res)).toMatch(/^application\/json/);
    const index = JSON.parse(res.text) as { name: string; namespaces: string[] };
    expect(index.name).toBe(TITLE);
    expect(index.namespaces).toContain('wp/v2');
  });

  it('an "almost pretty" /index.php/… URL (/index.php/wp-json/wp/v2/posts) runs index.php and reaches the REST API', async () => {
    const res = await new WpBrowser(wp().url).fetch('/index.php/wp-json/wp/v2/posts');
    expect(res.status, report(res)).toBe(200);
    expect(String(res.headers['content-type']), report(res)).toMatch(/^application\/json/);
    expect(Array.isArray(JSON.parse(res.text))).toBe(true);
  });

  it('wp-cron.php answers 200', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-cron.php');
    expect(res.status, report(res)).toBe(200);
  });

  it('a packaged asset (/wp-includes/js/jquery/jquery.js) is served as a static file', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-includes/js/jquery/jquery.js');
    expect(res.status, report(res)).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/javascript/);
    expect(res.body.equals(await readFile(join(root, 'wp-includes/js/jquery/jquery.js')))).toBe(
      true,
    );
  });

  it('an asset symlinked out of the root (wp-includes/js/underscore.min.js -> /usr/share/javascript) is served', async () => {
    const res = await new WpBrowser(wp().url).fetch('/wp-includes/js/underscore.min.js');
    expect(res.status, report(res)).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/javascript/);
    expect(
      res.body.equals(await readFile('/usr/share/javascript/underscore/underscore.min.js')),
    ).toBe(true);
  });

  it("the theme's stylesheet is served through Debian's wp-content/themes symlink", async () => {
    const res = await new WpBrowser(wp().url).fetch(
      '/wp-content/themes/twentytwentythree/style.css',
    );
    expect(res.status, report(res)).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^text\/css/);
    expect(res.text).toContain('Theme Name: Twenty Twenty-Three');
  });
});
