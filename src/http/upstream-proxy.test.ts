// The upstream proxy over real sockets: a real node:http upstream that echoes what it received, a
// hand-written WebSocket upstream, and a small front server wired like server.ts wires it.
// A regression here looks like a wrong upstream, a rewritten URI, spoofable X-Forwarded-*, a
// corrupted body, a hung client on upstream failure, or upstream requests outliving their client.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { sendError, type RequestContext } from './request-context.ts';
import { createUpstreamProxy, type UpstreamProxy } from './upstream-proxy.ts';

const logger = pino({ level: 'silent' });
const CLIENT = '203.0.113.7'; // what trusted-proxy evaluation decided; not the socket's address

interface Echo {
  name: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
  sha256: string;
  /** Local port of the proxy's upstream connection: equal across requests when it was reused. */
  peerPort: number;
}

const servers: Server[] = [];
const sockets = new Set<Duplex>(); // every accepted socket, upgraded ones included

async function listen(server: Server): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: Duplex) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Upstream: echoes method/url/headers and a body digest; a few paths misbehave on purpose. */
function echoUpstream(name: string): { server: Server; closed: Map<string, Promise<void>> } {
  const closed = new Map<string, Promise<void>>();
  const server = createServer((req, res) => {
    const url = req.url ?? '';
    closed.set(url, new Promise((resolve) => res.once('close', () => resolve())));
    if (url.endsWith('/slow')) return; // never answers
    if (url.endsWith('/stream')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n'); // then nothing: the client leaves mid-response
      return;
    }
    if (url.endsWith('/cut')) {
      res.writeHead(200, { 'content-length': '100' });
      res.write('ten bytes!', () => res.socket?.destroy());
      return;
    }
    if (url.endsWith('/echo-body')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
      return;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on('end', () => {
      const echo: Echo = {
        name,
        method: req.method ?? '',
        url,
        headers: req.headers,
        bytes,
        sha256: hash.digest('hex'),
        peerPort: req.socket.remotePort ?? 0,
      };
      res.writeHead(201, {
        'content-type': 'application/json',
        'x-hop': 'must not reach the client',
        connection: 'x-hop',
      });
      res.end(JSON.stringify(echo));
    });
  });
  return { server, closed };
}

/** WebSocket upstream written by hand (RFC 6455): handshake, then echoes text frames. */
function wsUpstream(): { server: Server; handshakes: IncomingMessage[] } {
  const handshakes: IncomingMessage[] = [];
  const server = createServer((_req, res) => res.writeHead(426).end());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handshakes.push(req);
    const accept = createHash('sha1')
      .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    let buf = head;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const frame = parseClientFrame(buf);
        if (frame === null) return;
        buf = buf.subarray(frame.size);
        if (frame.opcode === 1) {
          socket.write(serverFrame(1, Buffer.from(`echo:${frame.payload.toString('utf8')}`)));
        } else if (frame.opcode === 8) {
          socket.end(serverFrame(8, frame.payload));
        }
      }
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  return { server, handshakes };
}

function parseClientFrame(buf: Buffer): { opcode: number; payload: Buffer; size: number } | null {
  if (buf.length < 2) return null;
  const opcode = (buf[0] ?? 0) & 0x0f;
  let len = (buf[1] ?? 0) & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    offset = 4;
  }
  if (buf.length < offset + 4 + len) return null;
  const mask = buf.subarray(offset, offset + 4);
  const payload = Buffer.from(buf.subarray(offset + 4, offset + 4 + len));
  for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return { opcode, payload, size: offset + 4 + len };
}

function serverFrame(opcode: number, payload: Buffer): Buffer {
  // Payloads here stay under 126 bytes: the one-byte length form is enough.
  return Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]);
}

/** Front server simulating the lead's wiring in server.ts. */
async function startFront(proxy: UpstreamProxy): Promise<{ port: number; ctxs: RequestContext[] }> {
  const ctxs: RequestContext[] = [];
  const server = createServer({ shouldUpgradeCallback: (req) => proxy.wantsUpgrade(req) });
  server.on('request', (req, res) => {
    const ctx: RequestContext = {
      req,
      res,
      requestId: `req-${ctxs.length + 1}`,
      log: logger,
      startedAt: process.hrtime.bigint(),
      clientAddress: CLIENT,
      https: true,
      kind: 'internal',
      upstreamMs: null,
      logStatus: null,
      error: null,
    };
    ctxs.push(ctx);
    const route = proxy.match(req.url ?? '/');
    if (route === null) {
      sendError(ctx, 404, 'no upstream route');
      return;
    }
    void proxy.handle(ctx, route);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!proxy.upgrade(req, socket, head, CLIENT, true, 'ws-req')) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    }
  });
  return { port: await listen(server), ctxs };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function send(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body === undefined) {
      req.end();
      return;
    }
    // Stream the body in 64 KiB pieces, honouring backpressure.
    const body = options.body;
    let offset = 0;
    const pump = (): void => {
      while (offset < body.length) {
        const piece = body.subarray(offset, offset + 65536);
        offset += piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

function json(reply: Reply): Echo {
  return JSON.parse(reply.body.toString('utf8')) as Echo;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let a: ReturnType<typeof echoUpstream>;
let b: ReturnType<typeof echoUpstream>;
let ws: ReturnType<typeof wsUpstream>;
let proxy: UpstreamProxy;
let front: Awaited<ReturnType<typeof startFront>>;
let quick: UpstreamProxy; // timeout 300 ms
let quickFront: Awaited<ReturnType<typeof startFront>>;
let downPort: number;

beforeAll(async () => {
  a = echoUpstream('a');
  b = echoUpstream('b');
  ws = wsUpstream();
  const [aPort, bPort, wsPort] = await Promise.all([
    listen(a.server),
    listen(b.server),
    listen(ws.server),
  ]);
  // A port that nothing listens on: bind, note it, close.
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  downPort = (probe.address() as AddressInfo).port;
  probe.close();
  await once(probe, 'close');

  const routes = {
    '/app/': `http://127.0.0.1:${aPort}`,
    '/app/admin/': `http://127.0.0.1:${bPort}`,
    '/ws/': `http://127.0.0.1:${wsPort}`,
    '/down/': `http://127.0.0.1:${downPort}`,
  };
  proxy = createUpstreamProxy({ routes, connectTimeoutMs: 2000, timeoutMs: 5000, logger });
  front = await startFront(proxy);
  quick = createUpstreamProxy({ routes, connectTimeoutMs: 2000, timeoutMs: 300, logger });
  quickFront = await startFront(quick);
});

afterAll(async () => {
  proxy.close();
  quick.close();
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

describe('routing', () => {
  it('sends each prefix to its upstream, longest prefix first', async () => {
    expect(json(await send(front.port, '/app/x')).name).toBe('a');
    expect(json(await send(front.port, '/app/admin/users')).name).toBe('b');
    expect(json(await send(front.port, '/app/admin')).name).toBe('a');
    expect((await send(front.port, '/elsewhere')).status).toBe(404);
  });

  it('forwards the original request URI unchanged (no normalization, query kept)', async () => {
    const uri = '/app/a//b/./c/../d%2Fe%20?x=1&y=%20&z&x=2';
    const echo = json(await send(front.port, uri));
    expect(echo.url).toBe(uri);
    // Matched after normalization (like nginx), forwarded as received.
    expect(json(await send(front.port, '/app/x/../admin/y?q')).url).toBe('/app/x/../admin/y?q');
    expect(json(await send(front.port, '/app/x/../admin/y?q')).name).toBe('b');
  });

  it('reuses upstream connections (keep-alive), whatever the client asked for', async () => {
    const first = json(await send(front.port, '/app/ka1'));
    const second = json(await send(front.port, '/app/ka2', { headers: { connection: 'close' } }));
    expect(second.peerPort).toBe(first.peerPort);
  });

  it('records the upstream time at the response head', async () => {
    const reply = await send(front.port, '/app/timed');
    expect(reply.status).toBe(201);
    const ctx = front.ctxs.at(-1);
    expect(ctx?.upstreamMs).toBeTypeOf('number');
    expect(ctx?.upstreamMs).toBeGreaterThanOrEqual(0);
    expect(ctx?.logStatus).toBeNull();
  });
});

describe('headers', () => {
  it('sets X-Forwarded-*, X-Real-IP, X-Request-Id, keeps Host and drops hop-by-hop', async () => {
    const reply = await send(front.port, '/app/headers', {
      headers: {
        host: 'shop.example:8443',
        'x-forwarded-for': '198.51.100.1',
        'x-forwarded-proto': 'http', // spoofed: the ctx says https
        'x-forwarded-host': 'evil.example',
        'x-real-ip': '6.6.6.6',
        'x-request-id': 'client-chosen',
        connection: 'keep-alive, x-secret',
        'x-secret': 'listed in Connection: hop-by-hop',
        'keep-alive': 'timeout=99',
        proxy: 'http://evil.example:3128', // httpoxy
        'x-app': 'kept',
      },
    });
    expect(reply.status).toBe(201);
    const h = json(reply).headers;
    expect(h.host).toBe('shop.example:8443');
    expect(h['x-forwarded-for']).toBe(`198.51.100.1, ${CLIENT}`);
    expect(h['x-real-ip']).toBe(CLIENT);
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('shop.example:8443');
    expect(h['x-request-id']).toMatch(/^req-\d+$/);
    expect(h['x-app']).toBe('kept');
    expect(h['x-secret']).toBeUndefined();
    expect(h['proxy']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h.connection).toBe('keep-alive'); // our pooled upstream connection, not the client's
    // Response side: the header the upstream's Connection named never reaches the client.
    expect(reply.headers['x-hop']).toBeUndefined();
    expect(reply.headers['content-type']).toBe('application/json');
  });

  it('without an incoming X-Forwarded-For the client address is the whole header', async () => {
    const h = json(await send(front.port, '/app/plain')).headers;
    expect(h['x-forwarded-for']).toBe(CLIENT);
  });

  it('Expect: 100-continue is answered by the sidecar, not forwarded', async () => {
    const body = Buffer.from('after continue');
    const echo = await new Promise<Echo>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: front.port,
        path: '/app/expect',
        method: 'POST',
        headers: { expect: '100-continue', 'content-length': String(body.length) },
        agent: false,
      });
      req.on('continue', () => req.end(body));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Echo));
      });
      req.on('error', reject);
    });
    expect(echo.headers.expect).toBeUndefined();
    expect(echo.bytes).toBe(body.length);
  });
});

describe('bodies', () => {
  const body = randomBytes(5 * 1024 * 1024);

  it('streams a 5 MiB POST to the upstream intact', async () => {
    const echo = json(await send(front.port, '/app/upload', { method: 'POST', body }));
    expect(echo.method).toBe('POST');
    expect(echo.bytes).toBe(body.length);
    expect(echo.sha256).toBe(sha256(body));
  });

  it('streams 5 MiB both ways, chunked request included', async () => {
    const reply = await send(front.port, '/app/echo-body', {
      method: 'PUT',
      headers: { 'transfer-encoding': 'chunked' },
      body,
    });
    expect(reply.status).toBe(200);
    expect(reply.body.length).toBe(body.length);
    expect(sha256(reply.body)).toBe(sha256(body));
  });
});

describe('failures', () => {
  it('answers 502 with a clear body when the upstream is down', async () => {
    const reply = await send(front.port, '/down/x');
    expect(reply.status).toBe(502);
    const text = reply.body.toString('utf8');
    expect(text).toContain('the upstream for /down/ refused the connection');
    expect(text).not.toContain(String(downPort)); // error bodies never show internal addresses
    expect(text).toContain('request id: req-');
    expect(front.ctxs.at(-1)?.error).toContain('refused');
  });

  it('answers 504 when the upstream is slower than proxy.timeout, and drops its request', async () => {
    const started = Date.now();
    const reply = await send(quickFront.port, '/app/slow');
    expect(reply.status).toBe(504);
    expect(reply.body.toString('utf8')).toContain('sent nothing for 300 ms (proxy.timeout)');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await a.closed.get('/app/slow'); // the upstream saw its request go away
  });

  it('an upstream that stalls mid-body past proxy.timeout is cut (504 logged)', async () => {
    const ctxsBefore = quickFront.ctxs.length;
    const outcome = await new Promise<string>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: quickFront.port,
        path: '/app/stream',
        agent: false,
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve('ended'));
        res.on('aborted', () => resolve('aborted'));
        res.on('error', () => resolve('aborted'));
      });
      req.on('error', () => resolve('aborted'));
      req.end();
    });
    expect(outcome).toBe('aborted');
    const ctx = quickFront.ctxs[ctxsBefore];
    expect(ctx?.logStatus).toBe(504);
    expect(ctx?.error).toContain('(proxy.timeout)');
  });

  it('a client abort mid-response aborts the upstream request', async () => {
    const ctxsBefore = front.ctxs.length;
    await new Promise<void>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: front.port,
        path: '/app/stream',
        agent: false,
      });
      req.on('response', (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ECONNRESET') reject(err);
      });
      req.end();
    });
    const upstreamClosed = a.closed.get('/app/stream');
    expect(upstreamClosed).toBeDefined();
    await upstreamClosed;
    const ctx = front.ctxs[ctxsBefore];
    await new Promise<void>((resolve) => {
      if (ctx?.res.closed === true) resolve();
      else ctx?.res.once('close', () => resolve());
    });
    // Nothing was answered on the client's behalf: the server logs its 499.
    expect(ctx?.logStatus).toBeNull();
    expect(ctx?.res.writableFinished).toBe(false);
  });

  it('an upstream that dies mid-body cuts the client connection (502 logged)', async () => {
    const error = await new Promise<unknown>((resolve) => {
      const req = request({ host: '127.0.0.1', port: front.port, path: '/app/cut', agent: false });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(null));
        res.on('error', resolve);
        res.on('aborted', () => resolve('aborted'));
      });
      req.on('error', resolve);
      req.end();
    });
    expect(error).not.toBeNull();
    const ctx = front.ctxs.at(-1);
    expect(ctx?.logStatus).toBe(502);
    expect(ctx?.error).toContain('before the response ended');
  });
});

describe('WebSocket', () => {
  it('round-trips a message through the proxy with forwarded headers', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${front.port}/ws/chat?room=1`);
    await once(socket, 'open');
    expect(proxy.openTunnels()).toBe(1);
    const message = once(socket, 'message');
    socket.send('hello');
    const [event] = (await message) as [MessageEvent];
    expect(event.data).toBe('echo:hello');
    const closed = once(socket, 'close');
    socket.close();
    await closed;

    const handshake = ws.handshakes.at(-1);
    expect(handshake?.url).toBe('/ws/chat?room=1');
    expect(handshake?.headers['x-forwarded-for']).toBe(CLIENT);
    expect(handshake?.headers['x-forwarded-proto']).toBe('https');
    expect(handshake?.headers['x-request-id']).toBe('ws-req');
    expect(handshake?.headers.host).toBe(`127.0.0.1:${front.port}`);
  });

  it('an upgrade for a path without a route is refused with 404', async () => {
    const status = await rawUpgrade(front.port, '/nowhere');
    expect(status.status).toBe(404);
  });

  it('answers 502 on the socket when the WebSocket upstream is down', async () => {
    const reply = await rawUpgrade(front.port, '/down/socket');
    expect(reply.status).toBe(502);
    expect(reply.body).toContain('refused the connection');
  });

  it('closes an idle tunnel after proxy.timeout', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${quickFront.port}/ws/idle`);
    await once(socket, 'open');
    const started = Date.now();
    await once(socket, 'close');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('close() ends open tunnels', async () => {
    const spare = createUpstreamProxy({
      routes: { '/ws/': `http://127.0.0.1:${(ws.server.address() as AddressInfo).port}` },
      connectTimeoutMs: 1000,
      timeoutMs: 5000,
      logger,
    });
    const spareFront = await startFront(spare);
    const socket = new WebSocket(`ws://127.0.0.1:${spareFront.port}/ws/x`);
    await once(socket, 'open');
    expect(spare.openTunnels()).toBe(1);
    const closed = once(socket, 'close');
    spare.close();
    await closed;
    expect(spare.openTunnels()).toBe(0);
  });
});

describe('configuration', () => {
  it('a bad target is a ConfigError naming proxy.routes and the value', () => {
    expect(() =>
      createUpstreamProxy({
        routes: { '/app/': 'localhost:6001' },
        connectTimeoutMs: 1000,
        timeoutMs: 1000,
        logger,
      }),
    ).toThrow(ConfigError);
    expect(() =>
      createUpstreamProxy({
        routes: { '/app/': 'localhost:6001' },
        connectTimeoutMs: 1000,
        timeoutMs: 1000,
        logger,
      }),
    ).toThrow(/proxy\.routes: "\/app\/" = "localhost:6001"/);
  });

  it('reconfigure swaps routes, and keeps the old ones when the new map is bad', () => {
    const p = createUpstreamProxy({
      routes: { '/a/': 'http://127.0.0.1:1' },
      connectTimeoutMs: 1000,
      timeoutMs: 1000,
      logger,
    });
    expect(() => p.reconfigure({ b: 'http://127.0.0.1:2' }, 1000, 1000)).toThrow(ConfigError);
    expect(p.match('/a/x')?.origin).toBe('http://127.0.0.1:1');
    p.reconfigure({ '/b/': 'http://127.0.0.1:2' }, 1000, 1000);
    expect(p.match('/a/x')).toBeNull();
    expect(p.match('/b/x')?.origin).toBe('http://127.0.0.1:2');
    p.close();
  });
});

/** A WebSocket handshake by hand, for answers the WebSocket client would not show (status, body). */
function rawUpgrade(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-version': '13',
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: '' });
    });
    req.on('error', reject);
    req.end();
  });
}
