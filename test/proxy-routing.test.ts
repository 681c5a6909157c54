/**
 * Routing (Laravel's try_files) and every security rule of docs/architecture.md (Design notes:
 * Routing; CGI params and security rules), each as its own regression test against the real
 * sidecar and php-fpm. A recurrence shows up as PHP source served, a script run that must not
 * run, or a param a client must not control.
 */
import { connect } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { APP_PRIVATE, startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

let sidecar: TestSidecar;
let scripts: TestSidecar;
let proxied: TestSidecar;
beforeAll(async () => {
  sidecar = await startTestSidecar({ 'static.internal_locations': `/protected/=${APP_PRIVATE}` });
  scripts = await startTestSidecar({ 'server.php_scripts': 'true' });
  proxied = await startTestSidecar({ 'server.trusted_proxies': '127.0.0.1' });
});
afterAll(async () => {
  await Promise.all([sidecar.close(), scripts.close(), proxied.close()]);
});

async function get(
  base: TestSidecar,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(`${base.url}${path}`, { headers });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

function serverOf(text: string): Record<string, string> {
  return (JSON.parse(text) as { server: Record<string, string> }).server;
}

/** Sends a request line byte for byte (undici would normalise the path). */
async function raw(base: TestSidecar, target: string): Promise<string> {
  const socket = connect(base.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

describe('try_files $uri $uri/ /index.php?$query_string', () => {
  it('serves an existing static file directly', async () => {
    const r = await get(sidecar, '/assets/style.css');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(r.text).toBe('body { color: red; }\n');
  });

  it('sends unknown paths to the front controller with the query string', async () => {
    const r = await get(sidecar, '/users/42/edit?tab=1');
    expect(JSON.parse(r.text)).toMatchObject({
      route: 'front-controller',
      path: '/users/42/edit',
      script: '/index.php',
    });
  });

  it('never serves .php source: an existing script goes to the front controller when php_scripts is off', async () => {
    const r = await get(sidecar, '/script.php');
    expect(r.text).not.toContain('<?php');
    expect(JSON.parse(r.text)).toMatchObject({ route: 'front-controller', path: '/script.php' });
  });

  it('runs an existing script with PATH_INFO when php_scripts is on', async () => {
    const r = await get(scripts, '/script.php/extra/path');
    expect(JSON.parse(r.text)).toEqual({
      script: 'script.php',
      path_info: '/extra/path',
      script_name: '/script.php',
    });
  });

  it('serves a directory index script when php_scripts is on', async () => {
    const r = await get(scripts, '/dir/');
    expect(r.text).toBe('dir index\n');
  });
});

describe('security regressions', () => {
  it('dotfiles are never served (.env)', async () => {
    const r = await get(sidecar, '/.env');
    expect(r.text).not.toContain('secret dotfile');
  });

  it('/.well-known/ is served', async () => {
    const r = await get(sidecar, '/.well-known/acme.txt');
    expect(r.status).toBe(200);
    expect(r.text).toBe('acme challenge\n');
  });

  it('CVE-2019-11043 family: no path-info split on a non-script (uploads/evil.jpg/x.php)', async () => {
    for (const base of [sidecar, scripts]) {
      const r = await get(base, '/uploads/evil.jpg/x.php');
      expect(r.text).not.toBe('evil');
    }
  });

  it('CVE-2019-11043 family: %0a in a path is refused with 400', async () => {
    const reply = await raw(scripts, '/script.php/%0aPHP_VALUE%0a');
    expect(reply.startsWith('HTTP/1.1 400')).toBe(true);
  });

  it('NUL in a path is refused with 400', async () => {
    const reply = await raw(sidecar, '/assets/style.css%00.php');
    expect(reply.startsWith('HTTP/1.1 400')).toBe(true);
  });

  it('traversal above the root is refused and never reads outside it', async () => {
    for (const target of [
      '/../private/secret.txt',
      '/assets/../../private/secret.txt',
      '/%2e%2e/private/secret.txt',
      '/assets/%2e%2e/%2e%2e/private/secret.txt',
    ]) {
      const reply = await raw(sidecar, target);
      expect(reply, target).not.toContain('top secret file');
      expect(reply.slice(0, 12), target).toMatch(/HTTP\/1.1 (400|404)/);
    }
  });

  it('httpoxy: the Proxy header never becomes HTTP_PROXY', async () => {
    const r = await get(sidecar, '/dump', { proxy: 'http://evil.example:3128' });
    expect(serverOf(r.text)['HTTP_PROXY']).toBeUndefined();
  });

  it('header names with "_" or "." are dropped (they alias other headers once folded)', async () => {
    const r = await get(sidecar, '/dump', {
      x_forwarded_for: '6.6.6.6',
      'x.real.ip': '6.6.6.7',
      'x-ok': 'yes',
    });
    const server = serverOf(r.text);
    expect(server['HTTP_X_FORWARDED_FOR']).toBeUndefined();
    expect(server['HTTP_X_REAL_IP']).toBeUndefined();
    expect(server['HTTP_X_OK']).toBe('yes');
  });

  it('a client cannot set PHP_VALUE, PHP_ADMIN_VALUE or REQUEST_BODY_FILE', async () => {
    const r = await get(sidecar, '/dump', {
      'php-value': 'auto_prepend_file=/etc/passwd',
      'php-admin-value': 'x=1',
      'request-body-file': '/etc/passwd',
    });
    const server = serverOf(r.text);
    expect(server['PHP_VALUE']).toBeUndefined();
    expect(server['PHP_ADMIN_VALUE']).toBeUndefined();
    expect(server['REQUEST_BODY_FILE']).toBeUndefined();
    expect(server['HTTP_PHP_VALUE']).toBe('auto_prepend_file=/etc/passwd');
    expect(r.text).not.toContain('root:x:0:0');
  });

  it('X-Forwarded-For / -Proto are ignored from an untrusted peer', async () => {
    const r = await get(sidecar, '/dump', {
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
    });
    const server = serverOf(r.text);
    expect(server['REMOTE_ADDR']).toBe('127.0.0.1');
    expect(server['HTTPS'] ?? '').toBe('');
  });

  it('HTTPS and the client address come from a trusted proxy (IPv6 client)', async () => {
    const r = await get(proxied, '/dump', {
      'x-forwarded-for': '2001:db8::7, 127.0.0.1',
      'x-forwarded-proto': 'https',
    });
    const server = serverOf(r.text);
    expect(server['REMOTE_ADDR']).toBe('2001:db8::7');
    expect(server['HTTPS']).toBe('on');
    expect(server['REQUEST_SCHEME']).toBe('https');
  });

  it('X-Accel-Redirect serves a file from a configured internal location only', async () => {
    const ok = await get(sidecar, '/accel?file=secret.txt');
    expect(ok.status).toBe(200);
    expect(ok.text).toBe('top secret file\n');
    expect(ok.headers['content-disposition']).toBe('attachment; filename="secret.txt"');
    expect(ok.headers['x-accel-redirect']).toBeUndefined();
    const escape = await get(sidecar, '/accel?file=..%2F..%2Fpublic%2F.env');
    expect(escape.text).not.toContain('secret dotfile');
    const direct = await get(sidecar, '/protected/secret.txt');
    expect(direct.text).not.toContain('top secret file');
  });

  it('X-Sendfile outside the internal locations is refused', async () => {
    const r = await get(sidecar, '/sendfile?path=/etc/passwd');
    expect(r.status).toBe(500);
    expect(r.text).not.toContain('root:x:0:0');
  });
});

describe('static files through the server', () => {
  it('range, 304 and precompressed variants', async () => {
    const full = await request(`${sidecar.url}/assets/big.txt`);
    const etag = full.headers['etag'] as string;
    await full.body.text();
    const range = await get(sidecar, '/assets/big.txt', { range: 'bytes=0-13' });
    expect(range.status).toBe(206);
    expect(range.text).toBe('precompressed ');
    const cond = await get(sidecar, '/assets/big.txt', { 'if-none-match': etag });
    expect(cond.status).toBe(304);
    const gz = await request(`${sidecar.url}/assets/big.txt`, {
      headers: { 'accept-encoding': 'gzip' },
    });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers['content-type']).toBe('text/plain; charset=utf-8');
    await gz.body.arrayBuffer();
  });
});

describe('server.error_pages and server.headers', () => {
  it("serves the configured page for the sidecar's own errors, keeps PHP's own, adds headers everywhere", async () => {
    const s = await startTestSidecar({
      'server.error_pages': '403=/errors/403.html',
      'server.headers': 'X-Frame-Options=SAMEORIGIN',
    });
    try {
      // A dotfile: the sidecar answers 403 itself, with the page and the status kept.
      const denied = await request(`${s.url}/.env`);
      expect(denied.statusCode).toBe(403);
      expect(denied.headers['content-type']).toMatch(/^text\/html/);
      expect(await denied.body.text()).toContain('Not for you');
      expect(denied.headers['x-frame-options']).toBe('SAMEORIGIN');
      // PHP's own 403 is PHP's (nginx error_page without fastcgi_intercept_errors).
      const fromPhp = await request(`${s.url}/status/403`);
      expect(fromPhp.statusCode).toBe(403);
      expect(await fromPhp.body.text()).not.toContain('Not for you');
      expect(fromPhp.headers['x-frame-options']).toBe('SAMEORIGIN');
    } finally {
      await s.close();
    }
  });
});

describe('server.error_pages with a PHP script', () => {
  it('runs the script as a GET with the original REQUEST_URI and keeps the error status', async () => {
    const s = await startTestSidecar({ 'server.error_pages': '403=/errors/403.php' });
    try {
      const res = await request(`${s.url}/.env?x=1`, { method: 'POST', body: 'ignored' });
      expect(res.statusCode).toBe(403); // the script said 200: the error's status wins
      expect(await res.body.text()).toBe('php error page for /.env?x=1 (GET)\n');
    } finally {
      await s.close();
    }
  });
});
