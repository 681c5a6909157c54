// FcgiPool against real peers: a small FastCGI responder on a real net.Server (TCP and unix),
// built on our own codec, that answers, stalls, closes without END_REQUEST or sends junk.
// Covers keep-alive reuse, cap + queue, retry of a dead reused socket, timeouts, refused
// connects, aborts, backpressure both ways, idle expiry and close().
import { once, EventEmitter } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { BeginRequestFlags, RecordType } from './constants.ts';
import { decodeNameValuePairs } from './name-value.ts';
import { RETRY_WINDOW_MS } from './exchange.ts';
import {
  encodeEndRequest,
  encodeRecord,
  encodeStreamData,
  encodeStreamEnd,
  RecordDecoder,
} from './record-codec.ts';
import {
  AbortFlag,
  FcgiPool,
  type FcgiCall,
  type FcgiPoolOptions,
  type FcgiRequestInit,
} from './pool.ts';

interface FakeRequest {
  readonly connectionId: number;
  readonly indexOnConnection: number;
  readonly flags: number;
  readonly params: Array<[string, string]>;
  readonly stdin: Buffer;
  readonly socket: net.Socket;
  stdout(data: string | Buffer): boolean;
  stderr(data: string): void;
  end(protocolStatus?: number): void;
}

interface BeginInfo {
  readonly connectionId: number;
  readonly indexOnConnection: number;
  readonly socket: net.Socket;
}

/** A FastCGI responder. `handler` runs once PARAMS and STDIN are complete. */
class FakeFpm extends EventEmitter {
  readonly server = net.createServer((socket) => this.#accept(socket));
  readonly sockets = new Set<net.Socket>();
  connections = 0;
  address = '';
  handler: (req: FakeRequest) => void = (req) => {
    req.stdout('Content-Type: text/plain\r\n\r\nhello');
    req.end();
  };
  /** Runs at BEGIN_REQUEST; returning true means "I dealt with this socket, stop". */
  onBegin: ((info: BeginInfo) => boolean) | null = null;

  static async start(transport: 'tcp' | 'unix' = 'tcp'): Promise<FakeFpm> {
    const fake = new FakeFpm();
    if (transport === 'unix') {
      const socketPath = path.join(
        os.tmpdir(),
        `askr-fake-fpm-${process.pid}-${Math.random()}.sock`,
      );
      fake.server.listen(socketPath);
      await once(fake.server, 'listening');
      fake.address = `unix:${socketPath}`;
    } else {
      fake.server.listen(0, '127.0.0.1');
      await once(fake.server, 'listening');
      fake.address = `127.0.0.1:${(fake.server.address() as net.AddressInfo).port}`;
    }
    return fake;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  #accept(socket: net.Socket): void {
    const connectionId = this.connections++;
    this.sockets.add(socket);
    // Like FPM with KEEP_CONN: without it, Nagle + delayed ACK add 40 ms per response.
    if (socket.remoteFamily !== undefined) socket.setNoDelay(true);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.emit('socketClose', connectionId);
    });
    socket.on('error', () => undefined);
    let index = 0;
    let flags = 0;
    let params: Buffer[] = [];
    let stdin: Buffer[] = [];
    const decoder = new RecordDecoder((record) => {
      if (record.type === RecordType.FCGI_BEGIN_REQUEST) {
        flags = record.content.readUInt8(2);
        params = [];
        stdin = [];
        if (this.onBegin?.({ connectionId, indexOnConnection: index, socket })) socket.pause();
      } else if (record.type === RecordType.FCGI_PARAMS) {
        params.push(Buffer.from(record.content));
      } else if (record.type === RecordType.FCGI_STDIN && record.content.length > 0) {
        stdin.push(Buffer.from(record.content));
      } else if (record.type === RecordType.FCGI_STDIN) {
        const req: FakeRequest = {
          connectionId,
          indexOnConnection: index++,
          flags,
          params: params.flatMap((p) => (p.length > 0 ? decodeNameValuePairs(p) : [])),
          stdin: Buffer.concat(stdin),
          socket,
          stdout: (data) =>
            socket.write(encodeStreamData(RecordType.FCGI_STDOUT, 1, Buffer.from(data))),
          stderr: (data) =>
            socket.write(encodeStreamData(RecordType.FCGI_STDERR, 1, Buffer.from(data))),
          end: (protocolStatus = 0) => {
            socket.write(encodeStreamEnd(RecordType.FCGI_STDOUT, 1));
            socket.write(encodeEndRequest(1, 0, protocolStatus));
            if ((flags & BeginRequestFlags.FCGI_KEEP_CONN) === 0) socket.end();
          },
        };
        this.emit('request', req);
        this.handler(req);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      if (!socket.destroyed) decoder.push(chunk);
    });
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  // Peers first: their sockets closing lets pool.close() finish without waiting for timeouts.
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function fakeFpm(transport: 'tcp' | 'unix' = 'tcp'): Promise<FakeFpm> {
  const fake = await FakeFpm.start(transport);
  cleanups.push(() => fake.close());
  return fake;
}

interface HookLog {
  retries: number;
  timeouts: string[];
  connectErrors: Error[];
  queueWaits: number[];
}

function makePool(address: string, options: Partial<FcgiPoolOptions> = {}): [FcgiPool, HookLog] {
  const log: HookLog = { retries: 0, timeouts: [], connectErrors: [], queueWaits: [] };
  const pool = new FcgiPool({
    address,
    keepAlive: true,
    maxConnections: 4,
    queueSize: 10,
    queueTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 60_000,
    hooks: {
      onRetry: () => (log.retries += 1),
      onTimeout: (kind) => log.timeouts.push(kind),
      onConnectError: (err) => log.connectErrors.push(err),
      onQueueWait: (ms) => log.queueWaits.push(ms),
    },
    ...options,
  });
  cleanups.push(() => pool.close());
  return [pool, log];
}

function init(extra: Partial<FcgiRequestInit> = {}): FcgiRequestInit {
  return {
    params: [
      ['REQUEST_METHOD', 'GET'],
      ['SCRIPT_FILENAME', '/srv/index.php'],
    ],
    sendTimeoutMs: 5000,
    readTimeoutMs: 5000,
    ...extra,
  };
}

async function readAll(call: FcgiCall): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of call.stdout) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

async function rejection(promise: Promise<unknown>): Promise<SidecarError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error('expected a rejection');
}

function nextRequest(fake: FakeFpm): Promise<FakeRequest> {
  return once(fake, 'request').then(([req]) => req as FakeRequest);
}

describe.each(['tcp', 'unix'] as const)('keep-alive over %s', (transport) => {
  it('serves N sequential requests on one socket, KEEP_CONN set, params in order', async () => {
    const fake = await fakeFpm(transport);
    const seen: FakeRequest[] = [];
    fake.on('request', (req: FakeRequest) => seen.push(req));
    const [pool, log] = makePool(fake.address);
    for (let i = 0; i < 20; i += 1) {
      const call = await pool.request(init());
      expect(await readAll(call)).toBe('Content-Type: text/plain\r\n\r\nhello');
      expect(await call.done).toEqual({ appStatus: 0, protocolStatus: 0 });
    }
    expect(fake.connections).toBe(1);
    expect(seen.map((r) => r.indexOnConnection)).toEqual([...Array(20).keys()]);
    expect(seen.every((r) => r.flags === BeginRequestFlags.FCGI_KEEP_CONN)).toBe(true);
    expect(seen[0]?.params).toEqual(init().params);
    expect(pool.stats()).toEqual({ open: 1, busy: 0, idle: 1, queued: 0, stalled: 0 });
    expect(log.queueWaits).toEqual(Array(20).fill(0));
  });
});

describe('a connection per request (keepAlive: false)', () => {
  it('sends BEGIN_REQUEST without KEEP_CONN and closes every connection at END_REQUEST', async () => {
    const fake = await fakeFpm('unix');
    const seen: FakeRequest[] = [];
    fake.on('request', (req: FakeRequest) => seen.push(req));
    const [pool] = makePool(fake.address, { keepAlive: false });
    expect(pool.keepAlive).toBe(false);
    for (let i = 0; i < 5; i += 1) {
      const call = await pool.request(init());
      expect(await readAll(call)).toContain('hello');
      await call.done;
      // Nothing idle is ever left to pin an FPM worker.
      expect(pool.stats()).toEqual({ open: 0, busy: 0, idle: 0, queued: 0, stalled: 0 });
    }
    expect(fake.connections).toBe(5);
    expect(seen.every((r) => r.flags === 0)).toBe(true);
  });

  it('still caps open connections and queues the rest', async () => {
    const fake = await fakeFpm('unix');
    const held: FakeRequest[] = [];
    fake.handler = (req) => held.push(req);
    const [pool] = makePool(fake.address, { keepAlive: false, maxConnections: 2 });
    const calls = [pool.request(init()), pool.request(init()), pool.request(init())];
    while (held.length < 2) await once(fake, 'request');
    expect(pool.stats()).toMatchObject({ open: 2, queued: 1 });
    for (const req of held.splice(0)) {
      req.stdout('Content-Type: text/plain\r\n\r\nok');
      req.end();
    }
    const third = await nextRequest(fake);
    third.stdout('Content-Type: text/plain\r\n\r\nok');
    third.end();
    for (const call of await Promise.all(calls)) expect(await readAll(call)).toContain('ok');
  });
});

describe('stalls (keep-alive)', () => {
  it('a fresh connection FPM leaves unanswered makes the pool close its idle kept ones', async () => {
    const fake = await fakeFpm('unix');
    // One FPM worker: connection 0 holds it until it closes; any other connection gets no byte
    // before that (it sits in the backlog), then is answered.
    let zeroOpen = true;
    fake.on('socketClose', (id: number) => {
      if (id === 0) zeroOpen = false;
    });
    fake.handler = (req) => {
      const answer = (): void => {
        req.stdout('Content-Type: text/plain\r\n\r\nhello');
        req.end();
      };
      if (req.connectionId === 0 || !zeroOpen) answer();
      else fake.once('socketClose', answer);
    };
    let stalls = 0;
    let freed = 0;
    const [pool] = makePool(fake.address, {
      hooks: { onStall: () => (stalls += 1), onWorkersFreed: (n) => (freed += n) },
    });
    // Two at once: connection 0 answers and goes idle (pinning the worker); connection 1 waits.
    const calls = await Promise.all([pool.request(init()), pool.request(init())]);
    for (const call of calls) expect(await readAll(call)).toContain('hello');
    expect(stalls).toBe(1);
    expect(freed).toBe(1);
    expect(zeroOpen).toBe(false);
  });
});

it('connects over IPv6 ("[::1]:port")', async () => {
  const fake = await fakeFpm();
  const v6 = net.createServer((socket) => fake.server.emit('connection', socket));
  v6.listen(0, '::1');
  await once(v6, 'listening');
  cleanups.push(() => new Promise((resolve) => v6.close(() => resolve())));
  const [pool] = makePool(`[::1]:${(v6.address() as net.AddressInfo).port}`);
  expect(await readAll(await pool.request(init()))).toContain('hello');
});

describe('request body', () => {
  it('sends a Buffer body as STDIN, byte for byte', async () => {
    const fake = await fakeFpm();
    const [pool] = makePool(fake.address);
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i += 1) body[i] = (i * 7) & 0xff;
    const received = nextRequest(fake);
    await readAll(await pool.request(init({ body })));
    expect((await received).stdin.equals(body)).toBe(true);
  });

  it('sends a stream body, pausing it while FPM does not read', async () => {
    const fake = await fakeFpm();
    const [pool] = makePool(fake.address);
    let reading = false;
    fake.onBegin = ({ socket }) => {
      // Stop reading until the test says so: our writes back up.
      socket.pause();
      setTimeout(() => {
        reading = true;
        socket.resume();
      }, 300);
      return false;
    };
    let produced = 0;
    const total = 40 * 1024 * 1024;
    const body = new Readable({
      read() {
        if (produced >= total) {
          this.push(null);
          return;
        }
        produced += 65536;
        this.push(Buffer.alloc(65536, 1));
      },
    });
    const received = nextRequest(fake);
    const call = pool.request(init({ body, sendTimeoutMs: 2000 }));
    await sleep(200);
    expect(reading).toBe(false);
    // Only what the kernel buffers and one stream buffer hold were pulled from the source.
    expect(produced).toBeLessThan(total / 2);
    await readAll(await call);
    expect((await received).stdin.length).toBe(total);
  });
});

describe('cap and queue', () => {
  it('queues the N+1th request, rejects at once past the queue, hands over a reused socket', async () => {
    const fake = await fakeFpm();
    const held: FakeRequest[] = [];
    fake.handler = (req) => held.push(req);
    const [pool, log] = makePool(fake.address, { maxConnections: 2, queueSize: 1 });
    const first = pool.request(init());
    const second = pool.request(init());
    while (held.length < 2) await once(fake, 'request');
    const third = pool.request(init());
    expect(pool.stats()).toEqual({ open: 2, busy: 2, idle: 0, queued: 1, stalled: 0 });
    const full = await rejection(pool.request(init()));
    expect(full.code).toBe(ErrorCodes.FCGI_POOL_EXHAUSTED);
    expect(full.message).toContain('all 2 FastCGI connections busy');

    await sleep(30);
    held[0]?.stdout('one');
    held[0]?.end();
    expect(await readAll(await first)).toBe('one');
    while (held.length < 3) await once(fake, 'request');
    expect(held[2]?.connectionId).toBe(held[0]?.connectionId);
    held[2]?.stdout('three');
    held[2]?.end();
    const thirdCall = await third;
    expect(await readAll(thirdCall)).toBe('three');
    expect(thirdCall.queueWaitMs).toBeGreaterThanOrEqual(25);
    expect(log.queueWaits.filter((ms) => ms > 0)).toHaveLength(1);
    held[1]?.end();
    await (
      await second
    ).done;
    expect(fake.connections).toBe(2);
    expect(pool.stats()).toEqual({ open: 2, busy: 0, idle: 2, queued: 0, stalled: 0 });
  });

  it('rejects a waiter when the queue timeout expires', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool, log] = makePool(fake.address, { maxConnections: 1, queueTimeoutMs: 100 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_POOL_EXHAUSTED);
    expect(err.message).toBe('all 1 FastCGI connections busy; waited 100 ms');
    expect(log.timeouts).toEqual(['queue']);
    expect(pool.stats().queued).toBe(0);
  });

  it('a queueSize of 0 rejects as soon as every socket is busy', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool] = makePool(fake.address, { maxConnections: 1, queueSize: 0 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    expect((await rejection(pool.request(init()))).code).toBe(ErrorCodes.FCGI_POOL_EXHAUSTED);
  });

  it('reconfigure() raising the cap serves waiters at once', async () => {
    const fake = await fakeFpm();
    const held: FakeRequest[] = [];
    fake.handler = (req) => held.push(req);
    const [pool] = makePool(fake.address, { maxConnections: 1 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    const waiting = pool.request(init());
    expect(pool.stats().queued).toBe(1);
    pool.reconfigure({ maxConnections: 2 });
    await once(fake, 'request');
    held[1]?.stdout('x');
    held[1]?.end();
    expect(await readAll(await waiting)).toBe('x');
    expect(fake.connections).toBe(2);
  });
});

describe('dead reused connection', () => {
  it('is retried once on a fresh socket (Buffer body)', async () => {
    const fake = await fakeFpm();
    // A recycled worker: the second request on a socket finds it closed.
    fake.onBegin = ({ indexOnConnection, socket }) => {
      if (indexOnConnection === 0) return false;
      socket.destroy();
      return true;
    };
    const [pool, log] = makePool(fake.address);
    await readAll(await pool.request(init()));
    const received = nextRequest(fake);
    const call = await pool.request(init({ body: Buffer.from('payload') }));
    expect(await readAll(call)).toContain('hello');
    expect((await received).stdin.toString()).toBe('payload');
    expect(log.retries).toBe(1);
    expect(fake.connections).toBe(2);
    expect(pool.stats().open).toBe(1);
  });

  it('is retried with a stream body that was not read yet', async () => {
    const fake = await fakeFpm();
    fake.onBegin = ({ indexOnConnection, socket }) => {
      if (indexOnConnection === 0) return false;
      socket.destroy();
      return true;
    };
    const [pool, log] = makePool(fake.address);
    await readAll(await pool.request(init()));
    const body = new PassThrough();
    const received = nextRequest(fake);
    const pending = pool.request(init({ body }));
    while (fake.connections < 2) await once(fake.server, 'connection');
    body.end('late body');
    await readAll(await pending);
    expect((await received).stdin.toString()).toBe('late body');
    expect(log.retries).toBe(1);
  });

  it('is not retried once a stream body was consumed', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => {
      if (req.indexOnConnection === 0) {
        req.stdout('first');
        req.end();
      } else {
        req.socket.destroy();
      }
    };
    const [pool, log] = makePool(fake.address);
    await readAll(await pool.request(init()));
    const err = await rejection(pool.request(init({ body: Readable.from([Buffer.from('x')]) })));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(err.message).toContain('FPM closed the connection before END_REQUEST');
    expect(log.retries).toBe(0);
  });

  it('is retried exactly once: a second failure is reported', async () => {
    const fake = await fakeFpm();
    fake.onBegin = ({ connectionId, indexOnConnection, socket }) => {
      if (connectionId === 0 && indexOnConnection === 0) return false;
      socket.destroy();
      return true;
    };
    const [pool, log] = makePool(fake.address);
    await readAll(await pool.request(init()));
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(log.retries).toBe(1);
    expect(fake.connections).toBe(2);
    expect(pool.stats().open).toBe(0);
  });

  // Regression: a worker killed mid-script (request_terminate_timeout) before printing anything
  // on a reused socket looked like a dead pooled socket, so the request (a POST) ran twice.
  it('is not retried when it dies after RETRY_WINDOW_MS (the script was running)', async () => {
    const fake = await fakeFpm();
    let executions = 0;
    fake.handler = (req) => {
      executions += 1;
      if (req.indexOnConnection === 0) {
        req.end();
        return;
      }
      setTimeout(() => req.socket.destroy(), RETRY_WINDOW_MS + 100);
    };
    const [pool, log] = makePool(fake.address);
    await (
      await pool.request(init())
    ).done;
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(log.retries).toBe(0);
    expect(executions).toBe(2);
  });

  it('a fresh socket closing without END_REQUEST is a 502, never retried', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.socket.destroy();
    const [pool, log] = makePool(fake.address);
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(log.retries).toBe(0);
  });

  it('a socket the peer closes while idle is dropped before reuse', async () => {
    const fake = await fakeFpm();
    const [pool, log] = makePool(fake.address);
    await readAll(await pool.request(init()));
    const closed = once(fake, 'socketClose');
    for (const socket of fake.sockets) socket.end();
    await closed;
    while (pool.stats().open > 0) await sleep(5);
    await readAll(await pool.request(init()));
    expect(log.retries).toBe(0);
    expect(fake.connections).toBe(2);
  });

  it('closing mid-response destroys stdout and rejects done with 502', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => {
      req.stdout('Status: 200\r\n\r\npartial');
      setTimeout(() => req.socket.destroy(), 20);
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    const stdoutError = once(call.stdout, 'error');
    call.stdout.resume();
    expect((await rejection(call.done)).code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(((await stdoutError)[0] as SidecarError).code).toBe(ErrorCodes.FCGI_CONNECTION_CLOSED);
    expect(pool.stats().open).toBe(0);
  });
});

describe('timeouts and connect errors', () => {
  it('read timeout while waiting for the response: 504, socket destroyed', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool, log] = makePool(fake.address);
    const err = await rejection(pool.request(init({ readTimeoutMs: 100 })));
    expect(err.code).toBe(ErrorCodes.FCGI_TIMEOUT);
    expect(err.message).toContain('read timeout');
    expect(err.message).toContain('100 ms');
    expect(log.timeouts).toEqual(['read']);
    expect(pool.stats().open).toBe(0);
  });

  it('read timeout between chunks rejects done and destroys stdout', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.stdout('Status: 200\r\n\r\nstart');
    const [pool] = makePool(fake.address);
    const call = await pool.request(init({ readTimeoutMs: 100 }));
    call.stdout.resume();
    expect((await rejection(call.done)).code).toBe(ErrorCodes.FCGI_TIMEOUT);
    expect(call.stdout.destroyed).toBe(true);
  });

  it('send timeout when FPM stops reading our body: 504', async () => {
    const fake = await fakeFpm();
    fake.onBegin = ({ socket }) => {
      socket.pause();
      return true;
    };
    const [pool, log] = makePool(fake.address);
    const err = await rejection(
      pool.request(init({ body: Buffer.alloc(64 * 1024 * 1024), sendTimeoutMs: 150 })),
    );
    expect(err.code).toBe(ErrorCodes.FCGI_TIMEOUT);
    expect(err.message).toContain('send timeout');
    expect(log.timeouts).toEqual(['send']);
  });

  it('connect refused (TCP): 502 naming the address and errno', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const address = `127.0.0.1:${(probe.address() as net.AddressInfo).port}`;
    await new Promise((resolve) => probe.close(resolve));
    const [pool, log] = makePool(address);
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECT);
    expect(err.message).toContain(address);
    expect(err.message).toContain('ECONNREFUSED');
    expect(log.connectErrors).toHaveLength(1);
    expect(pool.stats().open).toBe(0);
  });

  it('connect to a missing unix socket: 502 with ENOENT', async () => {
    const [pool] = makePool('unix:/nonexistent/askr-fpm.sock');
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_CONNECT);
    expect(err.message).toContain('unix:/nonexistent/askr-fpm.sock');
    expect(err.message).toContain('ENOENT');
  });
});

describe('abort', () => {
  it('before the response: rejects with 499, destroys the socket, count goes down', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool] = makePool(fake.address);
    const controller = new AbortController();
    const pending = pool.request(init({ signal: controller.signal }));
    await once(fake, 'request');
    expect(pool.stats().busy).toBe(1);
    const peerClosed = once(fake, 'socketClose');
    controller.abort();
    const err = await rejection(pending);
    expect(err.code).toBe(ErrorCodes.FCGI_ABORTED);
    await peerClosed;
    expect(pool.stats()).toEqual({ open: 0, busy: 0, idle: 0, queued: 0, stalled: 0 });
  });

  it('during the response: call.abort() destroys the socket, never pooled', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.stdout('Status: 200\r\n\r\nstreaming');
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    call.abort();
    expect((await rejection(call.done)).code).toBe(ErrorCodes.FCGI_ABORTED);
    expect(call.stdout.destroyed).toBe(true);
    expect(pool.stats().open).toBe(0);
  });

  it('the consumer destroying stdout counts as an abort', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.stdout('Status: 200\r\n\r\nstreaming');
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    call.stdout.destroy();
    expect((await rejection(call.done)).code).toBe(ErrorCodes.FCGI_ABORTED);
    expect(pool.stats().open).toBe(0);
  });

  it('an AbortFlag as the signal: before the response, rejects with 499 and drops the socket', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool] = makePool(fake.address);
    const gone = new AbortFlag();
    const pending = pool.request(init({ signal: gone }));
    await once(fake, 'request');
    const peerClosed = once(fake, 'socketClose');
    gone.abort();
    gone.abort(); // idempotent
    expect(gone.aborted).toBe(true);
    expect((await rejection(pending)).code).toBe(ErrorCodes.FCGI_ABORTED);
    await peerClosed;
    expect(pool.stats()).toEqual({ open: 0, busy: 0, idle: 0, queued: 0, stalled: 0 });
  });

  it('an AbortFlag as the signal: while queued, leaves the queue with 499', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool] = makePool(fake.address, { maxConnections: 1 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    const gone = new AbortFlag();
    const pending = pool.request(init({ signal: gone }));
    expect(pool.stats().queued).toBe(1);
    gone.abort();
    expect((await rejection(pending)).code).toBe(ErrorCodes.FCGI_ABORTED);
    expect(pool.stats().queued).toBe(0);
  });

  it('while queued: leaves the queue with 499', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool] = makePool(fake.address, { maxConnections: 1 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    const controller = new AbortController();
    const pending = pool.request(init({ signal: controller.signal }));
    expect(pool.stats().queued).toBe(1);
    controller.abort();
    expect((await rejection(pending)).code).toBe(ErrorCodes.FCGI_ABORTED);
    expect(pool.stats().queued).toBe(0);
  });
});

describe('backpressure', () => {
  it('an unread stdout pauses the socket: the peer stalls, memory stays bounded', async () => {
    const fake = await fakeFpm();
    const chunk = Buffer.alloc(60_000, 0x61);
    const total = chunk.length * 1000;
    let written = 0;
    fake.handler = (req) => {
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!req.stdout(chunk)) {
            req.socket.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      req.stdout('Status: 200\r\n\r\n');
      pump();
    };
    const [pool, log] = makePool(fake.address);
    // The read timeout is shorter than the stall: it must not fire while we hold back.
    const call = await pool.request(init({ readTimeoutMs: 150 }));
    await sleep(400);
    const stalledAt = written;
    await sleep(300);
    expect(written).toBe(stalledAt);
    expect(stalledAt).toBeLessThan(total / 4);
    expect(call.stdout.readableLength).toBeLessThan(256 * 1024);
    expect(log.timeouts).toEqual([]);
    let received = 0;
    for await (const chunk of call.stdout) received += (chunk as Buffer).length;
    expect(received).toBe(total + 'Status: 200\r\n\r\n'.length);
    await call.done;
    expect(pool.stats()).toEqual({ open: 1, busy: 0, idle: 1, queued: 0, stalled: 0 });
  });

  it('END_REQUEST arriving while stdout is still unread: done resolves, bytes kept', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => {
      req.stdout(Buffer.alloc(40_000, 0x62));
      req.end();
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    // Nothing read yet: END_REQUEST came in the same chunk, the socket is already back in the pool.
    expect(await call.done).toEqual({ appStatus: 0, protocolStatus: 0 });
    expect(pool.stats()).toEqual({ open: 1, busy: 0, idle: 1, queued: 0, stalled: 0 });
    expect(call.stdout.readableLength).toBe(40_000);
    // The next request may use the socket while the previous stdout is still being read.
    const next = await pool.request(init());
    expect((await readAll(call)).length).toBe(40_000);
    await readAll(next);
    expect(fake.connections).toBe(1);
  });

  it('call.ended is false while the response streams, true once END_REQUEST is in', async () => {
    // The PHP handler sends a whole small page in one write when `ended` is true: it must never
    // be true before END_REQUEST, or a response would be cut short.
    const fake = await fakeFpm();
    let finish = (): void => undefined;
    fake.handler = (req) => {
      req.stdout('Content-Type: text/plain\r\n\r\nfirst');
      finish = () => {
        req.stdout('second');
        req.end();
      };
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    expect(call.ended).toBe(false);
    finish();
    await call.done;
    expect(call.ended).toBe(true);
    expect(await readAll(call)).toBe('Content-Type: text/plain\r\n\r\nfirstsecond');
  });

  it('a slow consumer of a large response gets every byte, then the socket is reused', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => {
      req.stdout(Buffer.alloc(2_000_000, 0x62));
      req.end();
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init({ readTimeoutMs: 200 }));
    let received = 0;
    for await (const chunk of call.stdout) {
      received += (chunk as Buffer).length;
      await sleep(5);
    }
    expect(received).toBe(2_000_000);
    expect(await call.done).toEqual({ appStatus: 0, protocolStatus: 0 });
    await readAll(await pool.request(init()));
    expect(fake.connections).toBe(1);
  });
});

describe('peer input', () => {
  it('ignores GET_VALUES_RESULT, UNKNOWN_TYPE and unknown types; passes STDERR on', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => {
      req.socket.write(encodeRecord(RecordType.FCGI_GET_VALUES_RESULT, 0, Buffer.alloc(0)));
      req.socket.write(encodeRecord(RecordType.FCGI_UNKNOWN_TYPE, 0, Buffer.alloc(8)));
      req.socket.write(encodeRecord(42, 1, Buffer.from('future')));
      req.stderr('PHP Warning: x');
      req.stdout('ok');
      req.end();
    };
    const [pool] = makePool(fake.address);
    const stderr: string[] = [];
    const call = await pool.request(init({ onStderr: (c) => stderr.push(c.toString()) }));
    expect(await readAll(call)).toBe('ok');
    expect(stderr).toEqual(['PHP Warning: x']);
    await readAll(await pool.request(init()));
    expect(fake.connections).toBe(1);
  });

  it.each([
    ['a non-FastCGI peer', Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')],
    ['STDOUT for another request id', encodeRecord(RecordType.FCGI_STDOUT, 7, Buffer.from('x'))],
    ['a short END_REQUEST', encodeRecord(RecordType.FCGI_END_REQUEST, 1, Buffer.alloc(3))],
  ])('%s is a 502 protocol error, no crash', async (_name, junk) => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.socket.write(junk);
    const [pool] = makePool(fake.address);
    const err = await rejection(pool.request(init()));
    expect(err.code).toBe(ErrorCodes.FCGI_PROTOCOL);
    expect(pool.stats().open).toBe(0);
  });

  it('END_REQUEST with FCGI_OVERLOADED resolves done with it; the socket is not reused', async () => {
    const fake = await fakeFpm();
    fake.handler = (req) => req.end(2);
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    expect(await call.done).toEqual({ appStatus: 0, protocolStatus: 2 });
    expect(await readAll(call)).toBe('');
    await (
      await pool.request(init())
    ).done;
    expect(fake.connections).toBe(2);
  });
});

describe('lifecycle', () => {
  it('closes idle sockets after idleTimeoutMs', async () => {
    const fake = await fakeFpm();
    const [pool] = makePool(fake.address, { idleTimeoutMs: 100 });
    await readAll(await pool.request(init()));
    expect(pool.stats().idle).toBe(1);
    await once(fake, 'socketClose');
    expect(pool.stats()).toEqual({ open: 0, busy: 0, idle: 0, queued: 0, stalled: 0 });
  });

  it('close(): rejects waiters and new requests, lets the busy request finish', async () => {
    const fake = await fakeFpm();
    const held: FakeRequest[] = [];
    fake.handler = (req) => held.push(req);
    const [pool] = makePool(fake.address, { maxConnections: 1 });
    const busy = pool.request(init());
    await once(fake, 'request');
    const waiter = pool.request(init());
    let closed = false;
    const closing = pool.close().then(() => (closed = true));
    expect((await rejection(waiter)).code).toBe(ErrorCodes.FCGI_POOL_CLOSED);
    expect((await rejection(pool.request(init()))).code).toBe(ErrorCodes.FCGI_POOL_CLOSED);
    expect(closed).toBe(false);
    held[0]?.stdout('last');
    held[0]?.end();
    expect(await readAll(await busy)).toBe('last');
    await closing;
    expect(pool.stats().open).toBe(0);
  });

  it('rejects a bad address or option at construction', () => {
    expect(() => makePool('localhost')).toThrow(/bad FastCGI address/);
    expect(() => makePool('127.0.0.1:9000', { maxConnections: 0 })).toThrow(/maxConnections/);
  });
});

/**
 * The hot path of issue 13: one socket write per request with a known body, a complete response
 * taken without a stream, STDOUT kept intact although every FPM socket reads into one shared
 * buffer, and one timer for the whole queue. A recurrence looks like two writes per request, a
 * response body mixing bytes of a later read, or a waiter expiring at another one's deadline.
 */
describe('the hot path', () => {
  it.each([
    ['no body', null],
    ['a Buffer body', Buffer.from('a=1&b=2')],
  ])('%s: the whole request goes to FPM in one socket write', async (_name, body) => {
    const fake = await fakeFpm('unix');
    const [pool] = makePool(fake.address);
    // A first request opens the connection; the second is measured on the reused socket.
    await readAll(await pool.request(init()));
    const write = vi.spyOn(net.Socket.prototype, 'write');
    try {
      const seen = nextRequest(fake);
      const call = await pool.request(init({ body }));
      expect(await readAll(call)).toBe('Content-Type: text/plain\r\n\r\nhello');
      const ours = write.mock.contexts.filter((socket) => !fake.sockets.has(socket as net.Socket));
      expect(ours).toHaveLength(1);
      const req = await seen;
      expect(req.params).toEqual(init().params);
      expect(req.stdin.equals(body ?? Buffer.alloc(0))).toBe(true);
    } finally {
      write.mockRestore();
    }
  });

  it('a response complete at END_REQUEST is taken whole (takeStdout), then stdout is empty', async () => {
    const fake = await fakeFpm();
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    await call.done;
    expect(call.ended).toBe(true);
    const chunks = call.takeStdout();
    expect(Buffer.concat(chunks ?? []).toString()).toBe('Content-Type: text/plain\r\n\r\nhello');
    expect(call.takeStdout()).toEqual([]);
    expect(await readAll(call)).toBe('');
  });

  it('takeStdout is null while the response streams and once stdout was used', async () => {
    const fake = await fakeFpm();
    let finish = (): void => undefined;
    fake.handler = (req) => {
      req.stdout('Content-Type: text/plain\r\n\r\nfirst');
      finish = () => {
        req.stdout('second');
        req.end();
      };
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    expect(call.takeStdout()).toBeNull();
    const reading = readAll(call);
    finish();
    await call.done;
    expect(call.takeStdout()).toBeNull();
    expect(await reading).toBe('Content-Type: text/plain\r\n\r\nfirstsecond');
  });

  it('STDOUT held across reads keeps its bytes: later reads into the shared buffer do not touch it', async () => {
    // Two different patterns in two separate socket reads (the second after a pause): bytes of
    // the first read, still unread when the second arrives, must not be overwritten by it.
    const fake = await fakeFpm('unix');
    const first = Buffer.alloc(3000, 0x61);
    const second = Buffer.alloc(5000, 0x62);
    fake.handler = (req) => {
      req.stdout(first);
      setTimeout(() => {
        req.stdout(second);
        req.end();
      }, 50);
    };
    const [pool] = makePool(fake.address);
    const call = await pool.request(init());
    await call.done;
    const all = Buffer.concat(call.takeStdout() ?? []);
    expect(all.equals(Buffer.concat([first, second]))).toBe(true);
  });

  it('one queue timer: waiters expire at their own deadline, with their own wait in the message', async () => {
    const fake = await fakeFpm();
    fake.handler = () => undefined;
    const [pool, log] = makePool(fake.address, { maxConnections: 1, queueTimeoutMs: 400 });
    void pool.request(init()).catch(() => undefined);
    await once(fake, 'request');
    const order: string[] = [];
    const longer = rejection(pool.request(init())).then((err) => {
      order.push(err.message);
      return err;
    });
    pool.reconfigure({ queueTimeoutMs: 100 });
    const shorter = rejection(pool.request(init())).then((err) => {
      order.push(err.message);
      return err;
    });
    expect(pool.stats().queued).toBe(2);
    expect((await shorter).code).toBe(ErrorCodes.FCGI_POOL_EXHAUSTED);
    expect(pool.stats().queued).toBe(1);
    expect((await longer).code).toBe(ErrorCodes.FCGI_POOL_EXHAUSTED);
    expect(order).toEqual([
      'all 1 FastCGI connections busy; waited 100 ms',
      'all 1 FastCGI connections busy; waited 400 ms',
    ]);
    expect(log.timeouts).toEqual(['queue', 'queue']);
    expect(pool.stats().queued).toBe(0);
  });
});
