// serveStaticFile over a real node:http server on 127.0.0.1:0, driven by undici: validators and
// conditional requests, single and multipart ranges, precompressed siblings, binary integrity,
// files that vanish or change after the caller's stat, and no descriptor leak on client abort.
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import {
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  rm,
  stat,
  truncate,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { serveStaticFile } from './static-files.ts';
import type { StaticResult } from './static-files.ts';
import { acceptedEncodings, parseByteRanges } from './static-negotiation.ts';

// Fixed mtime so ETag / Last-Modified are known in the tables (2024-01-02T03:04:05Z).
const MTIME = 1704164645;
const LM = 'Tue, 02 Jan 2024 03:04:05 GMT';
const etag = (size: number): string => `"${MTIME.toString(16)}-${size.toString(16)}"`;

const HELLO = '<h1>hello</h1>\n';
const DIGITS = '0123456789'.repeat(100);
const JS = 'console.log("hello from app.js");\n'.repeat(50);
const JS_BR = brotliCompressSync(JS);
const JS_GZ = gzipSync(JS);
const CSS = 'body { color: red }\n'.repeat(20);
const CSS_GZ = gzipSync(CSS);
const RANDOM = randomBytes(1024 * 1024);
const BIG_SIZE = 32 * 1024 * 1024;

type Outcome = { result: StaticResult } | { error: unknown };

let dir: string;
let server: Server;
let origin: string;
let agent: Agent;
// Caller's stats that are stale on purpose (file changed or removed after stat).
const staleStats = new Map<string, Stats>();
// One waiter per request, resolved with what serveStaticFile returned for it.
const waiters: ((outcome: Outcome) => void)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'askr-static-'));
  const files: [string, string | Buffer][] = [
    ['hello.html', HELLO],
    ['data.txt', DIGITS],
    ['app.js', JS],
    ['app.js.br', JS_BR],
    ['app.js.gz', JS_GZ],
    ['style.css', CSS],
    ['style.css.gz', CSS_GZ],
    ['empty.txt', ''],
    ['blob.qqq', 'opaque'],
    ['random.bin', RANDOM],
    ['big.bin', Buffer.alloc(BIG_SIZE, 7)],
  ];
  for (const [name, content] of files) {
    await writeFile(join(dir, name), content);
    await utimes(join(dir, name), MTIME, MTIME);
  }
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://test.invalid');
    const name = decodeURIComponent(url.pathname.slice(1));
    const filePath = join(dir, name);
    const options = {
      cacheControl: url.searchParams.get('cc') ?? '',
      precompressed: url.searchParams.has('pre'),
    };
    const waiter = waiters.shift();
    void (async () => {
      try {
        const st = staleStats.get(name) ?? (await stat(filePath));
        waiter?.({ result: await serveStaticFile(req, res, filePath, st, options) });
      } catch (error) {
        res.destroy();
        waiter?.({ error });
      }
    })();
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  agent = new Agent();
});

afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

interface Fetched {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  result: StaticResult;
}

async function fetchFile(
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<Fetched> {
  const outcome = new Promise<Outcome>((resolve) => waiters.push(resolve));
  const res = await request(origin + path, { method, headers, dispatcher: agent });
  const body = Buffer.from(await res.body.arrayBuffer());
  const settled = await outcome;
  if ('error' in settled) throw settled.error;
  return { status: res.statusCode, headers: res.headers, body, result: settled.result };
}

interface Case {
  name: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  status: number;
  /** Expected response headers; undefined means the header must be absent. */
  expect?: Record<string, string | undefined>;
  body?: string | Buffer;
}

const validators = { etag: etag(15), 'last-modified': LM };
const digitsTag = etag(1000);

const cases: Case[] = [
  // Plain answers
  {
    name: '200 with type, length, validators, nosniff',
    path: '/hello.html',
    status: 200,
    expect: {
      'content-type': 'text/html; charset=utf-8',
      'content-length': '15',
      ...validators,
      'accept-ranges': 'bytes',
      'x-content-type-options': 'nosniff',
      'cache-control': undefined,
      vary: undefined,
      'content-encoding': undefined,
    },
    body: HELLO,
  },
  {
    name: 'Cache-Control from options',
    path: '/hello.html?cc=public%2C%20max-age%3D60',
    status: 200,
    expect: { 'cache-control': 'public, max-age=60' },
    body: HELLO,
  },
  {
    name: 'HEAD: same headers, no body',
    path: '/hello.html',
    method: 'HEAD',
    status: 200,
    expect: { 'content-length': '15', 'content-type': 'text/html; charset=utf-8', ...validators },
    body: '',
  },
  {
    name: 'unknown extension is octet-stream',
    path: '/blob.qqq',
    status: 200,
    expect: { 'content-type': 'application/octet-stream' },
    body: 'opaque',
  },
  {
    name: 'empty file',
    path: '/empty.txt',
    status: 200,
    expect: { 'content-length': '0', etag: etag(0) },
    body: '',
  },
  // If-None-Match / If-Modified-Since
  {
    name: '304 via exact If-None-Match',
    path: '/hello.html?cc=no-cache',
    headers: { 'if-none-match': etag(15) },
    status: 304,
    expect: { ...validators, 'cache-control': 'no-cache', 'content-length': undefined },
    body: '',
  },
  {
    name: '304 via If-None-Match list with weak tag',
    path: '/hello.html',
    headers: { 'if-none-match': `"nope", W/${etag(15)}` },
    status: 304,
  },
  {
    name: '304 via If-None-Match *',
    path: '/hello.html',
    headers: { 'if-none-match': '*' },
    status: 304,
  },
  {
    name: '200 when If-None-Match differs',
    path: '/hello.html',
    headers: { 'if-none-match': '"nope"' },
    status: 200,
    body: HELLO,
  },
  {
    name: '304 via If-Modified-Since equal',
    path: '/hello.html',
    headers: { 'if-modified-since': LM },
    status: 304,
    expect: validators,
  },
  {
    name: '304 via If-Modified-Since later',
    path: '/hello.html',
    headers: { 'if-modified-since': 'Wed, 03 Jan 2024 00:00:00 GMT' },
    status: 304,
  },
  {
    name: '200 when If-Modified-Since earlier',
    path: '/hello.html',
    headers: { 'if-modified-since': 'Tue, 02 Jan 2024 03:04:04 GMT' },
    status: 200,
  },
  {
    name: 'invalid If-Modified-Since is ignored',
    path: '/hello.html',
    headers: { 'if-modified-since': 'yesterday' },
    status: 200,
  },
  {
    name: 'If-None-Match takes precedence over If-Modified-Since',
    path: '/hello.html',
    headers: { 'if-none-match': '"nope"', 'if-modified-since': LM },
    status: 200,
  },
  // If-Match / If-Unmodified-Since
  {
    name: '412 If-Match differs',
    path: '/hello.html',
    headers: { 'if-match': '"nope"' },
    status: 412,
  },
  { name: 'If-Match equal', path: '/hello.html', headers: { 'if-match': etag(15) }, status: 200 },
  { name: 'If-Match *', path: '/hello.html', headers: { 'if-match': '*' }, status: 200 },
  {
    name: '412 If-Match uses strong comparison',
    path: '/hello.html',
    headers: { 'if-match': `W/${etag(15)}` },
    status: 412,
  },
  {
    name: '412 If-Unmodified-Since earlier',
    path: '/hello.html',
    headers: { 'if-unmodified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' },
    status: 412,
  },
  {
    name: 'If-Unmodified-Since equal',
    path: '/hello.html',
    headers: { 'if-unmodified-since': LM },
    status: 200,
  },
  {
    name: 'If-Match wins over If-Unmodified-Since',
    path: '/hello.html',
    headers: { 'if-match': etag(15), 'if-unmodified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' },
    status: 200,
  },
  // Single ranges
  ...(
    [
      ['bytes=0-9', 0, 9],
      ['bytes=990-', 990, 999],
      ['bytes=-5', 995, 999],
      ['bytes=995-5000', 995, 999],
      ['bytes=-5000', 0, 999],
      ['bytes=10-10', 10, 10],
    ] as const
  ).map(([range, start, end]): Case => ({
    name: `206 ${range}`,
    path: '/data.txt',
    headers: { range },
    status: 206,
    expect: {
      'content-range': `bytes ${start}-${end}/1000`,
      'content-length': String(end - start + 1),
      'content-type': 'text/plain; charset=utf-8',
      etag: digitsTag,
      'accept-ranges': 'bytes',
    },
    body: DIGITS.slice(start, end + 1),
  })),
  {
    name: 'HEAD with Range: 206 headers, no body',
    path: '/data.txt',
    method: 'HEAD',
    headers: { range: 'bytes=0-9' },
    status: 206,
    expect: { 'content-range': 'bytes 0-9/1000', 'content-length': '10' },
    body: '',
  },
  // Unsatisfiable and ignored ranges
  ...['bytes=1000-', 'bytes=5000-6000', 'bytes=-0'].map((range): Case => ({
    name: `416 ${range}`,
    path: '/data.txt',
    headers: { range },
    status: 416,
    expect: { 'content-range': 'bytes */1000' },
  })),
  {
    name: '416 any range of an empty file',
    path: '/empty.txt',
    headers: { range: 'bytes=0-' },
    status: 416,
    expect: { 'content-range': 'bytes */0' },
  },
  ...['bytes=abc', 'items=0-5', 'bytes=9-5', 'bytes=0-999,0-999', 'bytes=', 'bytes=-'].map(
    (range): Case => ({
      name: `Range ${range} is ignored`,
      path: '/data.txt',
      headers: { range },
      status: 200,
      expect: { 'content-range': undefined, 'content-length': '1000' },
      body: DIGITS,
    }),
  ),
  {
    name: 'conditional 304 precedes Range',
    path: '/data.txt',
    headers: { range: 'bytes=0-9', 'if-none-match': digitsTag },
    status: 304,
  },
  // If-Range
  {
    name: 'If-Range etag match',
    path: '/data.txt',
    headers: { range: 'bytes=0-9', 'if-range': digitsTag },
    status: 206,
  },
  {
    name: 'If-Range date match',
    path: '/data.txt',
    headers: { range: 'bytes=0-9', 'if-range': LM },
    status: 206,
  },
  ...[
    ['etag mismatch', '"other"'],
    ['weak etag', `W/${digitsTag}`],
    ['date mismatch', 'Mon, 01 Jan 2024 00:00:00 GMT'],
  ].map(([what = '', value = '']): Case => ({
    name: `If-Range ${what} sends the full file`,
    path: '/data.txt',
    headers: { range: 'bytes=0-9', 'if-range': value },
    status: 200,
    expect: { 'content-range': undefined },
    body: DIGITS,
  })),
  // Precompressed siblings
  ...(
    [
      ['gzip, deflate, br', 'br'],
      ['br', 'br'],
      ['gzip', 'gzip'],
      ['x-gzip', 'gzip'],
      ['br;q=0, gzip', 'gzip'],
      ['gzip;q=1.0, br;q=0.5', 'gzip'],
      ['*', 'br'],
      ['*, br;q=0', 'gzip'],
      ['br;q=0, gzip;q=0', null],
      ['identity', null],
      ['deflate', null],
      ['br;q=banana', null],
    ] as const
  ).map(([acceptEncoding, encoding]): Case => ({
    name: `precompressed: Accept-Encoding "${acceptEncoding}" -> ${encoding ?? 'identity'}`,
    path: '/app.js?pre',
    headers: { 'accept-encoding': acceptEncoding },
    status: 200,
    expect: {
      'content-encoding': encoding ?? undefined,
      'content-type': 'text/javascript; charset=utf-8',
      vary: 'Accept-Encoding',
      etag: etag(encoding === 'br' ? JS_BR.length : encoding === 'gzip' ? JS_GZ.length : JS.length),
    },
    body: encoding === 'br' ? JS_BR : encoding === 'gzip' ? JS_GZ : JS,
  })),
  {
    name: 'precompressed: no Accept-Encoding -> identity',
    path: '/app.js?pre',
    status: 200,
    expect: { 'content-encoding': undefined, vary: 'Accept-Encoding' },
    body: JS,
  },
  {
    name: 'precompressed off: identity, no Vary',
    path: '/app.js',
    headers: { 'accept-encoding': 'br, gzip' },
    status: 200,
    expect: { 'content-encoding': undefined, vary: undefined },
    body: JS,
  },
  {
    name: 'precompressed: gzip when no .br sibling exists',
    path: '/style.css?pre',
    headers: { 'accept-encoding': 'br, gzip' },
    status: 200,
    expect: {
      'content-encoding': 'gzip',
      'content-type': 'text/css; charset=utf-8',
      'content-length': String(CSS_GZ.length),
    },
    body: CSS_GZ,
  },
  {
    name: 'precompressed: Range serves the identity file',
    path: '/app.js?pre',
    headers: { 'accept-encoding': 'br, gzip', range: 'bytes=0-9' },
    status: 206,
    expect: {
      'content-encoding': undefined,
      'content-range': `bytes 0-9/${JS.length}`,
      vary: 'Accept-Encoding',
    },
    body: JS.slice(0, 10),
  },
  {
    name: 'precompressed: 304 against the sibling etag',
    path: '/app.js?pre',
    headers: { 'accept-encoding': 'br', 'if-none-match': etag(JS_BR.length) },
    status: 304,
    expect: { etag: etag(JS_BR.length), vary: 'Accept-Encoding' },
  },
  // Methods
  ...['POST', 'PUT', 'DELETE', 'OPTIONS'].map((method): Case => ({
    name: `405 ${method}`,
    path: '/hello.html',
    method,
    status: 405,
    expect: { allow: 'GET, HEAD' },
  })),
];

describe('serveStaticFile', () => {
  it.each(cases)('$name', async (c) => {
    const method = c.method ?? 'GET';
    const res = await fetchFile(c.path, c.headers, method);
    expect(res.status).toBe(c.status);
    expect(res.result.status).toBe(c.status);
    for (const [name, value] of Object.entries(c.expect ?? {})) {
      expect(res.headers[name], name).toBe(value);
    }
    if (c.body !== undefined) expect(res.body.equals(Buffer.from(c.body))).toBe(true);
    expect(res.result.bytes).toBe(method === 'HEAD' ? 0 : res.body.length);
    // Every answer with a body says exactly how long it is.
    if (res.status !== 304 && method !== 'HEAD') {
      expect(res.headers['content-length']).toBe(String(res.body.length));
    }
  });

  it('multipart/byteranges: parts carry their own Content-Type and Content-Range', async () => {
    const res = await fetchFile('/data.txt', { range: 'bytes=0-4, 10-14,-3' });
    expect(res.status).toBe(206);
    const type = String(res.headers['content-type']);
    const boundary = /^multipart\/byteranges; boundary=(\S+)$/.exec(type)?.[1];
    expect(boundary).toBeDefined();
    expect(res.headers['content-length']).toBe(String(res.body.length));
    expect(parseMultipart(res.body, boundary ?? '')).toEqual([
      { type: 'text/plain; charset=utf-8', range: 'bytes 0-4/1000', data: DIGITS.slice(0, 5) },
      { type: 'text/plain; charset=utf-8', range: 'bytes 10-14/1000', data: DIGITS.slice(10, 15) },
      { type: 'text/plain; charset=utf-8', range: 'bytes 997-999/1000', data: DIGITS.slice(997) },
    ]);
    expect(res.result.bytes).toBe(res.body.length);
  });

  it('multipart HEAD announces the same length the GET body has', async () => {
    const range = { range: 'bytes=0-4,20-29' };
    const head = await fetchFile('/data.txt', range, 'HEAD');
    const get = await fetchFile('/data.txt', range);
    expect(head.status).toBe(206);
    expect(head.headers['content-length']).toBe(String(get.body.length));
  });

  it('precompressed bodies decompress to the original', async () => {
    const br = await fetchFile('/app.js?pre', { 'accept-encoding': 'br' });
    const gz = await fetchFile('/app.js?pre', { 'accept-encoding': 'gzip' });
    expect(brotliDecompressSync(br.body).toString()).toBe(JS);
    expect(gunzipSync(gz.body).toString()).toBe(JS);
  });

  it('binary content arrives intact (1 MiB random, sha256) and by range', async () => {
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    const full = await fetchFile('/random.bin');
    expect(full.headers['content-type']).toBe('application/octet-stream');
    expect(full.body.length).toBe(RANDOM.length);
    expect(sha(full.body)).toBe(sha(RANDOM));
    const part = await fetchFile('/random.bin', { range: 'bytes=100000-700000' });
    expect(sha(part.body)).toBe(sha(RANDOM.subarray(100000, 700001)));
  });

  it('404 when the file vanished between stat and open', async () => {
    const path = join(dir, 'gone.txt');
    await writeFile(path, 'soon gone');
    staleStats.set('gone.txt', await stat(path));
    await unlink(path);
    const res = await fetchFile('/gone.txt');
    expect(res.status).toBe(404);
    expect(res.result).toEqual({ status: 404, bytes: res.body.length });
  });

  it('404 when the path became a directory after stat', async () => {
    const path = join(dir, 'swapped');
    await writeFile(path, 'file for now');
    staleStats.set('swapped', await stat(path));
    await unlink(path);
    await mkdir(path);
    expect((await fetchFile('/swapped')).status).toBe(404);
  });

  it('headers follow the opened file when it changed after the caller stat', async () => {
    const path = join(dir, 'grow.txt');
    await writeFile(path, '0123456789');
    staleStats.set('grow.txt', await stat(path));
    await writeFile(path, '0123456789abcdefghij');
    const res = await fetchFile('/grow.txt');
    expect(res.headers['content-length']).toBe('20');
    expect(res.body.toString()).toBe('0123456789abcdefghij');
  });

  it('no descriptor stays open after full, HEAD, 304, 416, ranged and multipart answers', async () => {
    const path = join(dir, 'data.txt');
    await fetchFile('/data.txt');
    await fetchFile('/data.txt', {}, 'HEAD');
    await fetchFile('/data.txt', { 'if-none-match': digitsTag });
    await fetchFile('/data.txt', { range: 'bytes=5000-' });
    await fetchFile('/data.txt', { range: 'bytes=1-2' });
    await fetchFile('/data.txt', { range: 'bytes=1-2,5-6' });
    await fetchFile('/app.js?pre', { 'accept-encoding': 'br' });
    const targets = (await openFds()).targets;
    expect(targets).not.toContain(path);
    expect(targets).not.toContain(join(dir, 'app.js.br'));
  });

  // Regression guard: a short read must not end the response normally, or the client would wait
  // forever for the bytes Content-Length promised on a connection that looks reusable.
  it('a file truncated while being sent fails the response with ASKR_ERR_STATIC_FILE', async () => {
    const path = join(dir, 'shrink.bin');
    await writeFile(path, Buffer.alloc(BIG_SIZE, 1));
    const outcome = new Promise<Outcome>((resolve) => waiters.push(resolve));
    const shrinkAgent = new Agent();
    const res = await request(`${origin}/shrink.bin`, { dispatcher: shrinkAgent });
    const chunks = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await chunks.next(); // the server is now mid-body, parked on backpressure
    await truncate(path, 0);
    const drain = async (): Promise<void> => {
      while (!(await chunks.next()).done);
    };
    await expect(drain()).rejects.toThrow();
    const settled = await outcome;
    expect('error' in settled ? settled.error : settled.result).toMatchObject({
      code: 'ASKR_ERR_STATIC_FILE',
    });
    expect((await openFds()).targets).not.toContain(path);
    await shrinkAgent.close();
  });

  it('client abort mid-download closes the file descriptor', async () => {
    const bigPath = join(dir, 'big.bin');
    const before = await openFds();
    const outcome = new Promise<Outcome>((resolve) => waiters.push(resolve));
    // Own agent: its socket is the only one this test opens and closes.
    const abortAgent = new Agent();
    const res = await request(`${origin}/big.bin`, { dispatcher: abortAgent });
    expect(res.statusCode).toBe(200);
    // One chunk, then leave: the server is parked on backpressure far from the 64 MiB end.
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    const settled = await outcome;
    if ('error' in settled) throw settled.error;
    expect(settled.result.status).toBe(200);
    expect(settled.result.bytes).toBeGreaterThan(0);
    expect(settled.result.bytes).toBeLessThan(BIG_SIZE);
    // serveStaticFile has settled: its descriptor must already be closed.
    expect((await openFds()).targets).not.toContain(bigPath);
    await abortAgent.close();
    // Sockets close asynchronously; the count must come back to (at most) where it was.
    await vi.waitFor(async () => {
      expect((await openFds()).count).toBeLessThanOrEqual(before.count);
    });
  });
});

describe('parseByteRanges', () => {
  it.each([
    ['bytes=0-0', 10, [{ start: 0, end: 0 }]],
    ['BYTES = 2-3', 10, [{ start: 2, end: 3 }]],
    [
      'bytes=0-1,,4-5',
      10,
      [
        { start: 0, end: 1 },
        { start: 4, end: 5 },
      ],
    ],
    ['bytes=8-20', 10, [{ start: 8, end: 9 }]],
    ['bytes=20-30, 1-2', 10, [{ start: 1, end: 2 }]],
    ['bytes=20-30', 10, []],
    ['bytes=-3', 0, []],
    ['bytes=0-', 0, []],
    ['bytes=99999999999999999999-', 10, []],
    ['bytes=1-2-3', 10, null],
    ['bytes=a-b', 10, null],
    ['bytes=0-5,3-9', 10, null],
    [`bytes=${Array.from({ length: 65 }, (_, i) => `${i}-${i}`).join(',')}`, 100, null],
  ])('%s of %i bytes', (header, size, expected) => {
    expect(parseByteRanges(header, size)).toEqual(expected);
  });
});

describe('acceptedEncodings', () => {
  it.each([
    [undefined, []],
    ['', []],
    ['gzip, br', ['br', 'gzip']],
    ['GZIP;Q=0.8, BR;q=0.9', ['br', 'gzip']],
    ['br;q=0.1, gzip;q=0.2', ['gzip', 'br']],
    ['br;q=0, *', ['gzip']],
    ['gzip;q=0.000', []],
    ['gzip;q=2', []],
    ['gzip; level=1', ['gzip']],
  ] as const)('%s', (header, expected) => {
    expect(acceptedEncodings(header)).toEqual(expected);
  });
});

interface Part {
  type: string | undefined;
  range: string | undefined;
  data: string;
}

/** Splits a multipart/byteranges body (RFC 9110 §14.6 / RFC 2046), checking its framing. */
function parseMultipart(body: Buffer, boundary: string): Part[] {
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delimiter);
  expect(pos).toBe(0);
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 4).toString() === '--\r\n') {
      expect(pos + 4).toBe(body.length);
      return parts;
    }
    expect(body.subarray(pos, pos + 2).toString()).toBe('\r\n');
    const headEnd = body.indexOf('\r\n\r\n', pos);
    const headers = new Map(
      body
        .subarray(pos + 2, headEnd)
        .toString('latin1')
        .split('\r\n')
        .map((line) => {
          const colon = line.indexOf(':');
          return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as const;
        }),
    );
    const next = body.indexOf(delimiter, headEnd + 4);
    expect(next).toBeGreaterThan(0);
    parts.push({
      type: headers.get('content-type'),
      range: headers.get('content-range'),
      data: body.subarray(headEnd + 4, next).toString(),
    });
    pos = next;
  }
}

/** Descriptors of this process, with what each points to (sockets show as socket:[inode]). */
async function openFds(): Promise<{ count: number; targets: string[] }> {
  const targets: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    // The directory's own descriptor is gone by the time we read its link: skip what vanished.
    targets.push(await readlink(`/proc/self/fd/${fd}`).catch(() => ''));
  }
  return { count: targets.length, targets };
}
