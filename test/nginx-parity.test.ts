/**
 * Parity with nginx (issue "A drop-in for nginx's PHP recipes"): for each recipe, nginx runs the
 * app's OWN documented server block (helpers/nginx-recipes.ts) and the sidecar runs the matching
 * `server.recipe`, in front of the SAME php-fpm pool and document root (fixtures-php/parity). The
 * same raw requests go to both; what PHP sees ($_SERVER, getallheaders(), php://input) and what the
 * client gets (status, Location, security headers, Content-Type, body) must be equal, except the
 * differences in ALLOWED, each deliberate and explained. A failure lists, per request, every other
 * difference as `field: nginx <value> vs sidecar <value>`. ASKR_PARITY_VERBOSE=1 also prints the
 * allowed ones.
 */
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { NGINX_RECIPES, type NginxRecipe } from './helpers/nginx-recipes.ts';
import { nginxVersion, startNginx, type TestNginx } from './helpers/nginx.ts';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

const ROOT = fs.realpathSync(
  fileURLToPath(new URL('../fixtures-php/parity/public', import.meta.url)),
);
/** nginx's server_name and the sidecar's server.server_name: SERVER_NAME is then the same. */
const SERVER_NAME = 'parity.test';
/** Laravel's `add_header` lines, as the sidecar's server.headers. */
const LARAVEL_HEADERS = { 'X-Frame-Options': 'SAMEORIGIN', 'X-Content-Type-Options': 'nosniff' };
/** Response headers compared (Date, Server, ETag, Last-Modified, framing... are not). */
const COMPARED_HEADERS = ['Location', 'X-Frame-Options', 'X-Content-Type-Options', 'Content-Type'];

// ---------------------------------------------------------------------------------------------
// The request matrix, sent byte for byte the same to both servers.

interface ParityRequest {
  name: string;
  method: string;
  /** The request-target exactly as sent (no normalization by a client library). */
  target: string;
  /** After Host (unless given here), User-Agent and Connection: close. */
  headers?: Array<[string, string]>;
  body?: string;
  /** Send the body with Transfer-Encoding: chunked, in two chunks. */
  chunked?: boolean;
}

const FORM = 'name=caf%C3%A9&tags%5B%5D=a&tags%5B%5D=b';
const JSON_BODY = '{"name":"café","n":1}';

const MATRIX: ParityRequest[] = [
  { name: 'GET /', method: 'GET', target: '/' },
  { name: 'GET a route with a query', method: 'GET', target: '/some/route?x=1&y=%C3%A9' },
  { name: 'GET a route with an empty query', method: 'GET', target: '/some/route?' },
  { name: 'GET a route with an encoded slash', method: 'GET', target: '/some%2Froute' },
  { name: 'HEAD a route', method: 'HEAD', target: '/some/route?x=1' },
  {
    name: 'POST a form',
    method: 'POST',
    target: '/form?step=2',
    headers: [['Content-Type', 'application/x-www-form-urlencoded']],
    body: FORM,
  },
  {
    name: 'POST JSON',
    method: 'POST',
    target: '/api/items',
    headers: [['Content-Type', 'application/json']],
    body: JSON_BODY,
  },
  {
    name: 'POST chunked',
    method: 'POST',
    target: '/upload',
    headers: [['Content-Type', 'text/plain']],
    body: 'first chunk, then the second one',
    chunked: true,
  },
  { name: 'GET /index.php', method: 'GET', target: '/index.php?x=1' },
  { name: 'PATH_INFO after index.php', method: 'GET', target: '/index.php/extra/path?q=1' },
  { name: 'non-ASCII PATH_INFO', method: 'GET', target: '/index.php/caf%C3%A9' },
  { name: 'another script', method: 'GET', target: '/other.php?x=1' },
  { name: 'PATH_INFO after another script', method: 'GET', target: '/other.php/x' },
  { name: 'directory with an index, no slash', method: 'GET', target: '/dir?x=1' },
  { name: 'directory with an index', method: 'GET', target: '/dir/' },
  { name: 'directory without an index', method: 'GET', target: '/dir-noindex/' },
  { name: 'dotfile', method: 'GET', target: '/.env' },
  { name: '/.well-known/', method: 'GET', target: '/.well-known/x' },
  { name: 'traversal above the root', method: 'GET', target: '/../etc/passwd' },
  { name: 'encoded traversal above the root', method: 'GET', target: '/%2e%2e/etc/passwd' },
  { name: 'encoded traversal inside the root', method: 'GET', target: '/dir/%2e%2e/static.txt' },
  { name: 'double slash', method: 'GET', target: '//static.txt' },
  { name: 'static file', method: 'GET', target: '/static.txt' },
  { name: 'HEAD a static file', method: 'HEAD', target: '/static.txt' },
  { name: 'static script', method: 'GET', target: '/app.js' },
  { name: 'missing asset', method: 'GET', target: '/missing.css' },
  { name: 'symlink leaving the root', method: 'GET', target: '/linked.txt' },
  { name: 'non-ASCII file name', method: 'GET', target: '/caf%C3%A9.txt' },
  {
    name: 'header names with underscores',
    method: 'GET',
    target: '/',
    headers: [
      ['X_Custom_Header', 'underscore'],
      ['X-Custom-Header', 'dash'],
    ],
  },
  {
    name: 'duplicate headers',
    method: 'GET',
    target: '/',
    headers: [
      ['Cookie', 'a=1'],
      ['Accept', 'text/html'],
      ['Cookie', 'b=2'],
      ['Accept', 'application/json'],
    ],
  },
  { name: 'Host with a port', method: 'GET', target: '/', headers: [['Host', 'Parity.Test:8080']] },
];

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: one connection per request, read until the server closes.

interface Dump {
  script: string;
  server: Record<string, unknown>;
  headers: Record<string, unknown>;
  input_md5: string;
  input_length: number;
}

interface Observed {
  status: number;
  /** Lowercased names; every value received. */
  headers: Map<string, string[]>;
  body: Buffer;
  /** What PHP saw: the body of a PHP answer, or its X-Parity-Dump header (HEAD). */
  dump: Dump | undefined;
}

function encodeRequest(req: ParityRequest): Buffer {
  const headers = req.headers ?? [];
  const lines = [`${req.method} ${req.target} HTTP/1.1`];
  if (!headers.some(([n]) => n.toLowerCase() === 'host')) lines.push(`Host: ${SERVER_NAME}`);
  lines.push('User-Agent: askr-parity', ...headers.map(([n, v]) => `${n}: ${v}`));
  lines.push('Connection: close');
  const body = Buffer.from(req.body ?? '', 'utf8');
  let payload = Buffer.alloc(0);
  if (req.chunked === true) {
    lines.push('Transfer-Encoding: chunked');
    const half = Math.floor(body.length / 2);
    const chunks = [body.subarray(0, half), body.subarray(half)].map((c) =>
      Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]),
    );
    payload = Buffer.concat([...chunks, Buffer.from('0\r\n\r\n')]);
  } else if (req.body !== undefined) {
    lines.push(`Content-Length: ${body.length}`);
    payload = body;
  }
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), payload]);
}

function decodeChunked(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol === -1) throw new Error('truncated chunked body');
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('bad chunk size');
    if (size === 0) return Buffer.concat(out);
    out.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

function parseResponse(method: string, raw: Buffer): Observed {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no response head in ${JSON.stringify(raw.toString('latin1'))}`);
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  const headers = new Map<string, string[]>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  let body = raw.subarray(end + 4);
  if (method === 'HEAD' || status === 204 || status === 304) body = Buffer.alloc(0);
  else if (headers.get('transfer-encoding')?.join(',').includes('chunked')) {
    body = decodeChunked(body);
  } else if (headers.has('content-length')) {
    body = body.subarray(0, Number(headers.get('content-length')?.[0]));
  }
  return { status, headers, body, dump: readDump(headers, body) };
}

function readDump(headers: Map<string, string[]>, body: Buffer): Dump | undefined {
  const packed = headers.get('x-parity-dump')?.[0];
  const json =
    packed !== undefined
      ? inflateRawSync(Buffer.from(packed, 'base64')).toString('utf8')
      : body.toString('utf8');
  if (!json.startsWith('{"script":')) return undefined;
  return JSON.parse(json) as Dump;
}

async function send(port: number, req: ParityRequest): Promise<Observed> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.setTimeout(10_000, () => socket.destroy(new Error('no complete answer within 10 s')));
  // write, not end: a half-closed client looks gone to nginx (it drops a PHP request as 499).
  socket.write(encodeRequest(req));
  await new Promise<void>((resolve, reject) => {
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  return parseResponse(req.method, Buffer.concat(chunks));
}

// ---------------------------------------------------------------------------------------------
// Comparison.

interface Difference {
  /** `status`, a response header name, `body`, `script`, `php://input`, `$_SERVER[K]`, `getallheaders()[K]`. */
  field: string;
  nginx: unknown;
  sidecar: unknown;
}

interface Context {
  recipe: NginxRecipe;
  request: ParityRequest;
  nginx: Observed;
  sidecar: Observed;
}

interface Allowed {
  field: string | RegExp;
  /** Only for these recipes (default: all). */
  recipes?: readonly NginxRecipe[];
  /** Only when this holds for the two answers (default: always). */
  when?: (ctx: Context, diff: Difference) => boolean;
  /** Why the difference is deliberate: one line. */
  reason: string;
}

/** add_header without `always` adds to these statuses only (ngx_http_headers_filter). */
const ADD_HEADER_STATUSES = new Set([200, 201, 204, 206, 301, 302, 303, 304, 307, 308]);
/** An answer of the server itself (an error page, a redirect), not PHP's, not a file. */
const generated = (o: Observed): boolean => o.dump === undefined && o.status >= 300;
const servedSource = (o: Observed): boolean => o.status === 200 && o.body.includes('<?php');

const ALLOWED: Allowed[] = [
  {
    field: '$_SERVER[SERVER_SOFTWARE]',
    reason:
      'names the server: nginx/VERSION vs askr-sidecar/VERSION ("nginx (askr-sidecar/…)" for wordpress)',
  },
  {
    field: /^(\$_SERVER\[HTTP_HOST\]|getallheaders\(\)\[Host\])$/,
    when: ({ request }) =>
      (request.headers ?? []).some(([name, value]) => /^host$/i.test(name) && /[A-Z:]/.test(value)),
    reason:
      "Debian's fastcgi_params passes HTTP_HOST as $host (lowercased, no port); upstream nginx and the sidecar pass the Host header as sent (README: How requests are routed)",
  },
  {
    field: '$_SERVER[REMOTE_PORT]',
    reason: "the client's ephemeral port: each server gets its own connection",
  },
  {
    field: /^\$_SERVER\[REQUEST_TIME(_FLOAT)?\]$/,
    reason: "PHP's clock when each request started",
  },
  {
    field: '$_SERVER[REQUEST_ID]',
    reason: 'sidecar only: the id of the access-log line (README: How requests are routed)',
  },
  {
    field: '$_SERVER[ASKR_SOCKET]',
    reason: 'sidecar only: the socket askr_broadcast() sends to (README: Publish from PHP)',
  },
  {
    field: /^(body|Content-Type)$/,
    when: ({ nginx, sidecar }) => generated(nginx) && generated(sidecar),
    reason:
      "the server's own error and redirect pages: nginx's HTML vs the sidecar's plain text with the request id (README: Response handling)",
  },
  {
    field: /^(X-Frame-Options|X-Content-Type-Options)$/,
    recipes: ['laravel'],
    when: ({ nginx }, d) => !ADD_HEADER_STATUSES.has(nginx.status) && d.nginx === undefined,
    reason:
      'server.headers is `add_header … always` (README: recipes): errors get them too, where add_header without always adds nothing',
  },
  {
    field: /.*/,
    when: ({ nginx }) => servedSource(nginx),
    reason:
      'nginx sends an existing *.php outside its PHP location as a file (its source); the sidecar never serves PHP source (README: recipes)',
  },
  {
    field: /.*/,
    when: ({ request, nginx }) =>
      /\/\.(?!well-known\/)/.test(request.target) && nginx.status === 200,
    reason: "dotfiles are never served, where the app's recipe has no deny rule (README: recipes)",
  },
  {
    field: 'X-Content-Type-Options',
    when: ({ sidecar }, d) =>
      d.nginx === undefined && sidecar.dump === undefined && sidecar.status < 300,
    reason:
      'static files always carry nosniff: their Content-Type is never sniffed (src/http/mime-types.ts)',
  },
  {
    field: 'Content-Type',
    when: (_ctx, d) => d.sidecar === `${String(d.nginx)}; charset=utf-8`,
    reason:
      'textual static types carry "; charset=utf-8" (src/http/mime-types.ts); nginx adds it only under `charset utf-8` (Laravel\'s block)',
  },
  {
    field: 'Content-Type',
    when: (_ctx, d) =>
      String(d.nginx).startsWith('application/javascript') &&
      String(d.sidecar).startsWith('text/javascript'),
    reason:
      ".js is text/javascript (RFC 9239), nginx's mime.types says application/javascript (README: recipes)",
  },
];

/** nginx before 1.23 passes each repeated header as its own param (php-fpm keeps the last one). */
function versionAllowed(version: string): Allowed[] {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major > 1 || (major === 1 && minor >= 23)) return [];
  return [
    {
      field: /^(\$_SERVER\[HTTP_(COOKIE|ACCEPT)\]|getallheaders\(\)\[(Cookie|Accept)\])$/,
      when: ({ request }) => request.name === 'duplicate headers',
      reason: `nginx ${version} sends repeated headers as repeated params and PHP keeps the last; nginx 1.23+ joins them as the sidecar does`,
    },
  ];
}

function normalize(value: unknown, port: number): unknown {
  if (typeof value !== 'string') return value;
  if (value === String(port)) return '<port>';
  return value.replace(new RegExp(`:${port}(?!\\d)`, 'g'), ':<port>');
}

function describeBody(o: Observed): string {
  if (o.dump !== undefined) return `PHP ran ${o.dump.script}`;
  const md5 = createHash('md5').update(o.body).digest('hex');
  const start = o.body.subarray(0, 40).toString('utf8').replace(/\s+/g, ' ');
  return `${o.body.length} bytes (md5 ${md5}): ${JSON.stringify(start)}`;
}

function compare(n: Observed, s: Observed, nPort: number, sPort: number): Difference[] {
  const diffs: Difference[] = [];
  const add = (field: string, a: unknown, b: unknown): void => {
    const na = normalize(a, nPort);
    const sb = normalize(b, sPort);
    if (JSON.stringify(na) !== JSON.stringify(sb)) diffs.push({ field, nginx: na, sidecar: sb });
  };
  add('status', n.status, s.status);
  for (const h of COMPARED_HEADERS) {
    add(h, n.headers.get(h.toLowerCase())?.join(', '), s.headers.get(h.toLowerCase())?.join(', '));
  }
  const nd = n.dump;
  const sd = s.dump;
  if (nd === undefined || sd === undefined) {
    add('body', describeBody(n), describeBody(s));
    return diffs;
  }
  add('script', nd.script, sd.script);
  add(
    'php://input',
    `${nd.input_length} bytes, md5 ${nd.input_md5}`,
    `${sd.input_length} bytes, md5 ${sd.input_md5}`,
  );
  for (const [what, a, b] of [
    ['$_SERVER', nd.server, sd.server],
    ['getallheaders()', nd.headers, sd.headers],
  ] as const) {
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      add(`${what}[${key}]`, a[key], b[key]);
    }
  }
  return diffs;
}

const show = (v: unknown): string => (v === undefined ? '(absent)' : JSON.stringify(v));

function isAllowed(allowed: readonly Allowed[], ctx: Context, d: Difference): Allowed | undefined {
  return allowed.find(
    (a) =>
      (typeof a.field === 'string' ? a.field === d.field : a.field.test(d.field)) &&
      (a.recipes === undefined || a.recipes.includes(ctx.recipe)) &&
      (a.when === undefined || a.when(ctx, d)),
  );
}

// ---------------------------------------------------------------------------------------------

describe.each(NGINX_RECIPES)('recipe %s: nginx vs the sidecar', (recipe) => {
  let nginx: TestNginx | undefined;
  let sidecar: TestSidecar | undefined;
  let allowed: Allowed[] = [];

  beforeAll(async () => {
    allowed = [...ALLOWED, ...versionAllowed(nginxVersion())];
    nginx = await startNginx(recipe, {
      root: ROOT,
      fpmAddress: inject('fpmAddress'),
      serverName: SERVER_NAME,
    });
    sidecar = await startTestSidecar({
      'server.root': ROOT,
      'server.recipe': recipe,
      'server.server_name': SERVER_NAME,
      // nginx's default (disable_symlinks off) follows symlinks out of the root.
      'server.follow_symlinks': 'true',
      ...(recipe === 'laravel' ? { 'server.headers': LARAVEL_HEADERS } : {}),
      'log.access_log': 'false',
    });
  });
  afterAll(async () => {
    await sidecar?.close();
    await nginx?.stop();
  });

  it.each(MATRIX)('$name: $method $target', async (request) => {
    if (nginx === undefined || sidecar === undefined) throw new Error('not started');
    const sidecarPort = Number(new URL(sidecar.url).port);
    const ctx: Context = {
      recipe,
      request,
      nginx: await send(nginx.port, request),
      sidecar: await send(sidecarPort, request),
    };
    const diffs = compare(ctx.nginx, ctx.sidecar, nginx.port, sidecarPort);
    const lines: string[] = [];
    const verbose: string[] = [];
    for (const d of diffs) {
      const line = `${d.field}: nginx ${show(d.nginx)} vs sidecar ${show(d.sidecar)}`;
      const why = isAllowed(allowed, ctx, d);
      if (why === undefined) lines.push(line);
      else verbose.push(`${line}  [allowed: ${why.reason}]`);
    }
    if (process.env['ASKR_PARITY_VERBOSE'] === '1' && diffs.length > 0) {
      process.stdout.write(
        `[${recipe}] ${request.method} ${request.target}\n` +
          [...lines.map((l) => `  ${l}`), ...verbose.map((l) => `  ${l}`)].join('\n') +
          '\n',
      );
    }
    expect(
      lines.join('\n'),
      `${recipe}: ${request.method} ${request.target} differs from nginx`,
    ).toBe('');
  });
});
