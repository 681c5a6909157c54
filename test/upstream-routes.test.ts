/**
 * [proxy] routes through the real sidecar: a prefix goes to an HTTP upstream (not PHP), with
 * X-Forwarded-* set, and a WebSocket upgrade on that prefix is tunneled; other paths still reach
 * PHP, and a bad route stops the start with the key and value.
 */
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

let upstream: Server;
let s: TestSidecar;
beforeAll(async () => {
  upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  // A minimal RFC 6455 server: accept the handshake, echo one text frame back.
  upstream.on('upgrade', (req, socket) => {
    const accept = createHash('sha1')
      .update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.once('data', (frame: Buffer) => {
      const len = (frame[1] ?? 0) & 0x7f;
      const mask = frame.subarray(2, 6);
      const payload = Buffer.from(frame.subarray(6, 6 + len).map((b, i) => b ^ (mask[i % 4] ?? 0)));
      socket.write(frameOf(`echo:${payload.toString()}`));
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const port = (upstream.address() as AddressInfo).port;
  s = await startTestSidecar({ 'proxy.routes': `/svc/=http://127.0.0.1:${port}` });
});
afterAll(async () => {
  await s.close();
  upstream.close();
});

function frameOf(text: string): Buffer {
  const payload = Buffer.from(text);
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

describe('HTTP upstream routes', () => {
  it('proxies the prefix with the original URI and X-Forwarded-* headers', async () => {
    const res = await request(`${s.url}/svc/items?id=3`, { headers: { host: 'app.example' } });
    const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
    expect(res.statusCode).toBe(200);
    expect(body.url).toBe('/svc/items?id=3');
    expect(body.headers['host']).toBe('app.example');
    expect(body.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(body.headers['x-forwarded-proto']).toBe('http');
    expect(body.headers['x-request-id']).toMatch(/^[0-9a-f]{16}$/);
    const php = await request(`${s.url}/dump`);
    expect(php.statusCode).toBe(200);
    await php.body.text();
  });

  it('tunnels a WebSocket upgrade', async () => {
    const ws = new WebSocket(`${s.url.replace('http', 'ws')}/svc/socket`);
    await once(ws, 'open');
    const reply = new Promise<string>((resolve) =>
      ws.addEventListener('message', (e) => resolve(String(e.data))),
    );
    ws.send('hi');
    expect(await reply).toBe('echo:hi');
    ws.close();
  });

  it('answers 502 with the prefix, not the address, when the upstream is down', async () => {
    const down = await startTestSidecar({ 'proxy.routes': '/gone/=http://127.0.0.1:1' });
    try {
      const res = await request(`${down.url}/gone/x`);
      const text = await res.body.text();
      expect(res.statusCode).toBe(502);
      expect(text).toContain('/gone/');
      expect(text).not.toContain('127.0.0.1:1');
    } finally {
      await down.close();
    }
  });

  it('a bad route stops the start naming proxy.routes', async () => {
    await expect(startTestSidecar({ 'proxy.routes': '/x/=localhost:6001' })).rejects.toThrow(
      /proxy\.routes: "\/x\/" = "localhost:6001"/,
    );
  });
});
