/**
 * The FastCGI proxy against a real php-fpm: $_SERVER for a matrix of requests, methods, bodies,
 * uploads, cookies, status codes and redirects. Each case drives the real sidecar with undici.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { request, FormData } from 'undici';
import { toError } from '../src/errors.ts';
import { startTestSidecar, APP_ROOT, type TestSidecar } from './helpers/sidecar.ts';

interface Dump {
  server: Record<string, string>;
  get: Record<string, unknown>;
  post: Record<string, unknown>;
  cookie: Record<string, string>;
  files: Record<string, { name: string; size: number; error: number; sha256: string | null }>;
  input_length: number;
  input_sha256: string;
}

let sidecar: TestSidecar;
beforeAll(async () => {
  sidecar = await startTestSidecar({
    'server.max_body_size': '16MiB',
    'server.body_memory_size': '64KiB',
  });
});
afterAll(async () => {
  await sidecar.close();
});

async function dump(
  path: string,
  init: Parameters<typeof request>[1] = {},
): Promise<{ status: number; body: Dump; headers: Record<string, unknown> }> {
  const res = await request(`${sidecar.url}${path}`, init);
  const text = await res.body.text();
  expect(res.statusCode, text).toBe(200);
  return { status: res.statusCode, body: JSON.parse(text) as Dump, headers: res.headers };
}

describe('CGI params ($_SERVER)', () => {
  it('passes the nginx fastcgi.conf set for a simple GET', async () => {
    const { body } = await dump('/dump?a=1&b=two', {
      headers: { 'user-agent': 'askr-test', host: 'example.test:8080' },
    });
    const s = body.server;
    expect(s['REQUEST_METHOD']).toBe('GET');
    expect(s['QUERY_STRING']).toBe('a=1&b=two');
    expect(s['REQUEST_URI']).toBe('/dump?a=1&b=two');
    expect(s['SCRIPT_NAME']).toBe('/index.php');
    expect(s['SCRIPT_FILENAME']).toBe(`${APP_ROOT}/index.php`);
    expect(s['DOCUMENT_URI']).toBe('/index.php');
    expect(s['DOCUMENT_ROOT']).toBe(APP_ROOT);
    expect(s['SERVER_PROTOCOL']).toBe('HTTP/1.1');
    expect(s['REQUEST_SCHEME']).toBe('http');
    expect(s['HTTPS'] ?? '').toBe('');
    expect(s['GATEWAY_INTERFACE']).toBe('CGI/1.1');
    expect(s['SERVER_SOFTWARE']).toMatch(/^askr-sidecar\//);
    expect(s['REMOTE_ADDR']).toBe('127.0.0.1');
    expect(Number(s['REMOTE_PORT'])).toBeGreaterThan(0);
    expect(s['SERVER_ADDR']).toBe('127.0.0.1');
    expect(Number(s['SERVER_PORT'])).toBe(sidecar.port);
    expect(s['SERVER_NAME']).toBe('example.test');
    expect(s['REDIRECT_STATUS']).toBe('200');
    expect(s['HTTP_USER_AGENT']).toBe('askr-test');
    expect(s['HTTP_HOST']).toBe('example.test:8080');
    expect(s['REQUEST_ID']).toMatch(/^[0-9a-f]{16}$/);
    expect(body.get).toEqual({ a: '1', b: 'two' });
  });

  it('keeps REQUEST_URI as received for encoded paths and decodes nothing twice', async () => {
    const { body } = await dump('/dump/caf%C3%A9%20x%2Fy?q=%26%3D');
    expect(body.server['REQUEST_URI']).toBe('/dump/caf%C3%A9%20x%2Fy?q=%26%3D');
    expect(body.server['QUERY_STRING']).toBe('q=%26%3D');
    expect(body.get).toEqual({ q: '&=' });
  });

  it('passes an empty query string and no PATH_INFO for the front controller', async () => {
    const { body } = await dump('/dump');
    expect(body.server['QUERY_STRING']).toBe('');
    expect(body.server['PATH_INFO'] ?? '').toBe('');
  });

  it('joins repeated headers and passes cookies', async () => {
    const { body } = await dump('/dump', {
      headers: ['x-multi', 'one', 'x-multi', 'two', 'cookie', 'a=1', 'cookie', 'b=2'],
    });
    expect(body.server['HTTP_X_MULTI']).toBe('one, two');
    expect(body.cookie).toEqual({ a: '1', b: '2' });
  });
});

describe('methods and bodies', () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'] as const) {
    it(`${method} with an urlencoded body`, async () => {
      const { body } = await dump('/dump', {
        method,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'x=1&y=%C3%A9',
      });
      expect(body.server['REQUEST_METHOD']).toBe(method);
      expect(body.server['CONTENT_TYPE']).toBe('application/x-www-form-urlencoded');
      expect(body.server['CONTENT_LENGTH']).toBe('12');
      if (method === 'POST') expect(body.post).toEqual({ x: '1', y: 'é' });
      expect(body.input_length).toBe(12);
    });
  }

  it('multipart upload arrives intact in $_FILES', async () => {
    const file = randomBytes(300_000);
    const form = new FormData();
    form.append('title', 'hello');
    form.append('upload', new Blob([file]), 'photo.bin');
    const { body } = await dump('/dump', { method: 'POST', body: form });
    expect(body.post).toEqual({ title: 'hello' });
    expect(body.files['upload']).toMatchObject({ name: 'photo.bin', size: 300_000, error: 0 });
    expect(body.files['upload']?.sha256).toBe(createHash('sha256').update(file).digest('hex'));
  });

  it('a binary body of several MiB reaches php://input byte for byte', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const { body } = await dump('/dump', {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
    });
    expect(body.input_length).toBe(data.length);
    expect(body.input_sha256).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a chunked body is buffered (memory then temp file) and sent with CONTENT_LENGTH', async () => {
    const parts = [randomBytes(40_000), randomBytes(100_000), randomBytes(7)];
    function* gen(): Generator<Buffer> {
      for (const p of parts) yield p;
    }
    const { body } = await dump('/dump', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from(gen()),
    });
    const all = Buffer.concat(parts);
    expect(body.server['CONTENT_LENGTH']).toBe(String(all.length));
    expect(body.input_sha256).toBe(createHash('sha256').update(all).digest('hex'));
  });

  it('413 for a Content-Length over max_body_size, with a message naming the limit', async () => {
    const res = await request(`${sidecar.url}/dump`, {
      method: 'POST',
      body: Buffer.alloc(17 * 1024 * 1024),
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(413);
    expect(text).toContain('server.max_body_size');
  });

  it('413 for a chunked body that grows over max_body_size', async () => {
    function* gen(): Generator<Buffer> {
      for (let i = 0; i < 20; i++) yield Buffer.alloc(1024 * 1024);
    }
    const res = await request(`${sidecar.url}/dump`, {
      method: 'POST',
      body: Readable.from(gen()),
    }).catch((err: unknown) => toError(err));
    // The server answers 413 and closes; undici may report the reset instead when still sending.
    if (res instanceof Error)
      expect(String(res)).toMatch(/other side closed|ECONNRESET|EPIPE|socket/i);
    else {
      expect(res.statusCode).toBe(413);
      await res.body.text();
    }
  });
});

describe('response headers', () => {
  it('keeps every Set-Cookie', async () => {
    const res = await request(`${sidecar.url}/cookies`);
    await res.body.text();
    const cookies = res.headers['set-cookie'];
    expect(Array.isArray(cookies)).toBe(true);
    expect((cookies as string[]).map((c) => c.split('=')[0])).toEqual(['a', 'b', 'c']);
  });

  it('Status: sets the code and is never forwarded', async () => {
    const res = await request(`${sidecar.url}/status-header`);
    expect(res.statusCode).toBe(418);
    expect(res.headers['status']).toBeUndefined();
    expect(await res.body.text()).toBe('teapot\n');
  });

  it.each([201, 204, 404, 500, 503])('http_response_code(%i) is passed through', async (code) => {
    const res = await request(`${sidecar.url}/status/${code}`);
    await res.body.text();
    expect(res.statusCode).toBe(code);
  });

  it('a Location header without Status becomes a 302 redirect', async () => {
    const res = await request(`${sidecar.url}/redirect`);
    await res.body.text();
    expect(res.statusCode).toBe(302);
    expect(res.headers['location']).toBe('/dump?from=redirect');
  });

  it('instruction and hop-by-hop headers never reach the client', async () => {
    const res = await request(`${sidecar.url}/headers`);
    await res.body.text();
    expect(res.headers['x-custom']).toBe('yes');
    expect(res.headers['x-accel-buffering']).toBeUndefined();
    expect(res.headers['x-askr-internal']).toBeUndefined();
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f]{16}$/);
  });

  it('HEAD runs PHP but sends no body', async () => {
    const res = await request(`${sidecar.url}/big?mib=1`, { method: 'HEAD' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('');
  });

  it('streams a large response intact', async () => {
    const res = await request(`${sidecar.url}/big?mib=8`);
    const buf = Buffer.from(await res.body.arrayBuffer());
    expect(buf.length).toBe(8 * 1024 * 1024);
    expect(buf.subarray(0, 16).toString()).toBe('0123456789abcdef');
  });

  it('fastcgi_finish_request() answers early and the connection is not reused until the script ends', async () => {
    const started = Date.now();
    const res = await request(`${sidecar.url}/finish?ms=400`);
    expect(await res.body.text()).toBe('finished early\n');
    expect(Date.now() - started).toBeLessThan(400);
    // The next request still succeeds (on another connection or after END_REQUEST).
    const again = await request(`${sidecar.url}/status/200`);
    expect(again.statusCode).toBe(200);
    await again.body.text();
  });

  it('PHP stderr is logged with the request id', async () => {
    const res = await request(`${sidecar.url}/stderr?tag=t1`);
    await res.body.text();
    const requestId = res.headers['x-request-id'];
    await new Promise((r) => setTimeout(r, 50));
    const line = sidecar.logs.find(
      (l) => typeof l['php'] === 'string' && l['php'].includes('askr-test-stderr-marker t1'),
    );
    expect(line, JSON.stringify(sidecar.logs.slice(-5))).toBeDefined();
    expect(line?.['requestId']).toBe(requestId);
  });

  it('writes one access-log line per request with timings', async () => {
    const res = await request(`${sidecar.url}/status/201?log=1`);
    await res.body.text();
    const id = res.headers['x-request-id'];
    await new Promise((r) => setTimeout(r, 50));
    const lines = sidecar.logs.filter((l) => l['msg'] === 'request' && l['requestId'] === id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      method: 'GET',
      path: '/status/201?log=1',
      status: 201,
      kind: 'php',
    });
    expect(typeof lines[0]?.['durationMs']).toBe('number');
    expect(typeof lines[0]?.['upstreamMs']).toBe('number');
    expect(lines[0]?.['bytes']).toBeGreaterThan(0);
  });
});
