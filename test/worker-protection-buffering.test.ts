/**
 * Worker protection, client side: no client speed takes the site down. Against a static 2-worker
 * php-fpm (external, default sidecar settings): slow readers and slow uploaders hold no worker
 * (responses and request bodies are buffered by the sidecar), the streaming exceptions
 * (X-Accel-Buffering: no, SSE passthrough) still stream, server.body_timeout and
 * server.send_timeout cut stalled clients, temp files never outlive their request, big uploads
 * arrive intact.
 * A regression looks like: ordinary requests time out (UND_ERR_HEADERS_TIMEOUT) and the status
 * page cannot be read while 10 slow clients are connected, because each pins a worker; the first
 * streamed chunk arriving together with the last; a stalled client never let go; a file left in
 * server.temp_dir or a descriptor to a deleted one still open.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import {
  mkdtempSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  concurrentGets,
  sidecarBehind,
  startFpmPool,
  withDeadline,
  type FpmPool,
} from './helpers/fpm-pool.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import type { TestSidecar } from './helpers/sidecar.ts';
import { runCleanups, until, type Cleanups } from './helpers/wait.ts';

/** Per test: a stall fails here instead of ending in a 504 after 60 s of fastcgi.read_timeout. */
const TEST_TIMEOUT_MS = 30_000;
/**
 * Size of a response that really stalls its writer when the client does not read: loopback TCP
 * holds ~4 MiB of it (the sender's buffer grows to tcp_wmem's max; Node cannot shrink the
 * client's SO_RCVBUF), so 2 MiB would fit in the kernel and hold nothing at all.
 */
const STALL_MIB = 8;
const MIB = 1024 * 1024;

const cleanups: Cleanups = [];
afterEach(() => runCleanups(cleanups));

async function pool(): Promise<FpmPool> {
  const fpm = await startFpmPool({ pm: 'static', maxChildren: 2 });
  cleanups.push(() => fpm.stop());
  return fpm;
}

/** A sidecar with default settings in front of `fpm`, scripts callable by name, plus `overrides`. */
function sidecar(fpm: FpmPool, overrides: Record<string, unknown> = {}): Promise<TestSidecar> {
  return sidecarBehind(fpm, cleanups, overrides);
}

function freshDir(prefix: string): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** freshDir() that PHP's workers (www-data as root) may search: PHP looks for a file in it. */
async function freshPhpDir(prefix: string): Promise<string> {
  const dir = realpathSync(await phpTempDir(prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A raw client connection to the sidecar, destroyed after the test. */
function connect(s: TestSidecar): net.Socket {
  const { hostname, port } = new URL(s.url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  // Resets by the sidecar are among what these tests provoke; they assert on data and 'close'.
  socket.on('error', () => undefined);
  cleanups.push(() => {
    socket.destroy();
  });
  return socket;
}

function closed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** Resolves with the first bytes of the response; from then on the client reads nothing. */
function firstBytes(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new Error('connection closed before any response byte'));
    socket.once('close', onClose);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      socket.off('close', onClose);
      resolve(chunk);
    });
  });
}

/** Reads again and resolves with everything received until the connection closes. */
async function readToClose(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.resume();
  await closed(socket);
  return Buffer.concat(chunks);
}

/** Resolves with what arrived once a whole response head did, or the connection closed. */
function responseHead(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n\r\n')) done();
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('close', done);
      resolve(text);
    };
    socket.on('data', onData);
    socket.once('close', done);
  });
}

/** `count` clients that each GET a STALL_MIB response and stop reading after its first bytes. */
async function slowReaders(s: TestSidecar, count: number): Promise<net.Socket[]> {
  const readers = Array.from({ length: count }, () => connect(s));
  let started = 0;
  const firsts = readers.map(async (reader) => {
    reader.write(`GET /protect-big.php?mib=${STALL_MIB} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const first = await firstBytes(reader);
    started += 1;
    return first.toString('latin1');
  });
  const heads = await withDeadline(
    Promise.all(firsts),
    10_000,
    () =>
      `the first bytes of all ${count} big responses (${started} came; the others wait for a worker a slow reader holds?)`,
  );
  for (const head of heads) expect(head).toMatch(/^HTTP\/1\.1 200 /);
  return readers;
}

async function destroyAll(sockets: readonly net.Socket[]): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await Promise.all(sockets.map(closed));
}

/**
 * The status page of the pool shows a worker nobody holds (the page itself takes one). A worker
 * that has just answered shows "active" for a moment more, so the page is read again for up to
 * 3 s; a worker held by a slow client never turns idle.
 */
async function expectIdleWorker(fpm: FpmPool): Promise<void> {
  const status = await settle(
    () => fpm.readStatus(),
    (st) => st.idleProcesses >= 1 && st.activeProcesses < st.totalProcesses,
    3_000,
  );
  const shown = JSON.stringify(status);
  expect(status.idleProcesses, shown).toBeGreaterThanOrEqual(1);
  expect(status.activeProcesses, shown).toBeLessThan(status.totalProcesses);
}

/** Writes 100 bytes of body to each live socket every `intervalMs`; `tick()` awaits the next step. */
function pace(
  sockets: readonly net.Socket[],
  intervalMs: number,
): { tick(): Promise<void>; stop(): void } {
  const steps = new EventEmitter();
  const timer = setInterval(() => {
    for (const socket of sockets) if (!socket.destroyed) socket.write(Buffer.alloc(100, 0x61));
    steps.emit('step');
  }, intervalMs);
  const stop = (): void => clearInterval(timer);
  cleanups.push(stop);
  return { tick: () => once(steps, 'step').then(() => undefined), stop };
}

const UPLOAD_HEAD =
  'POST /protect-md5.php HTTP/1.1\r\nHost: localhost\r\n' +
  'Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n';

/**
 * Reads again every 10 ms until `ok` holds or `timeoutMs` passes, and returns the last value read,
 * for the test to assert on (a state with no event to wait for).
 */
async function settle<T>(
  read: () => T | Promise<T>,
  ok: (value: T) => boolean,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let value = await read();
  while (!ok(value) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 10));
    value = await read();
  }
  return value;
}

/** Targets of this process's open descriptors under `dir` ("… (deleted)" for unlinked files). */
function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed since the listing (the listing's own descriptor is one)
    }
    if (target.startsWith(`${dir}/`)) out.push(target);
  }
  return out;
}

describe('slow clients hold no PHP worker (static pool of 2)', () => {
  it(
    'while 10 slow readers of big responses are connected, others get 200 and FPM has an idle worker',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm);
      const readers = await slowReaders(s, 10);

      const outcomes = await concurrentGets(`${s.url}/protect-work.php`, 8, 5_000);
      expect(outcomes).toEqual({ '200': 8 });
      await expectIdleWorker(fpm);

      await destroyAll(readers);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'while 10 slow uploaders are connected, others get 200 and FPM has an idle worker',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm);
      const uploaders = Array.from({ length: 10 }, () => connect(s));
      for (const uploader of uploaders) uploader.write(UPLOAD_HEAD + 'a'.repeat(100));
      // 100 bytes a second: 1 MB would take almost 3 hours.
      const pacing = pace(uploaders, 1_000);
      await until(() => s.http.inFlight() === 10, 5_000, 'the sidecar to take all 10 uploads');
      await pacing.tick(); // every body is under way

      const outcomes = await concurrentGets(`${s.url}/protect-work.php`, 8, 5_000);
      expect(outcomes).toEqual({ '200': 8 });
      await expectIdleWorker(fpm);

      pacing.stop();
      await destroyAll(uploaders);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'server.body_timeout = 1s: an upload that pauses longer gets 408',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm, { 'server.body_timeout': '1s' });
      const uploader = connect(s);
      uploader.write(UPLOAD_HEAD + 'a'.repeat(100)); // and nothing more
      const head = await withDeadline(
        responseHead(uploader),
        10_000,
        'an answer to the paused upload',
      );
      expect(head).toMatch(/^HTTP\/1\.1 408 /);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'server.send_timeout = 1s: a client that stops reading is disconnected',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm, { 'server.send_timeout': '1s' });
      const client = connect(s);
      const path = `/protect-big.php?mib=${STALL_MIB}`;
      client.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const first = await firstBytes(client);
      expect(first.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);

      // No event reaches a client that does not read: the sidecar's access log says it gave up.
      await until(
        () => s.logs.some((l) => l['msg'] === 'request' && l['path'] === path),
        10_000,
        'the access-log line of the stalled request (the sidecar letting the client go)',
      );
      // Reading again, the client gets what the kernel still held, then the end of the connection.
      const rest = await withDeadline(readToClose(client), 10_000, 'the connection to close');
      expect(first.length + rest.length).toBeLessThan(STALL_MIB * MIB);
    },
    TEST_TIMEOUT_MS,
  );
});

describe('streaming exceptions still stream', () => {
  /** GETs protect-stream.php and checks its first chunk arrived while PHP still waited for it. */
  async function expectStreamed(
    s: TestSidecar,
    query: string,
    headers: Record<string, string>,
    expected: { first: string; whole: string },
  ): Promise<void> {
    // The script sends its first chunk, then waits for this file (or 3 s) before the rest and
    // says which came: "gate" proves the client had the first chunk while PHP was running.
    const gate = join(await freshPhpDir('askr-gate-'), 'open');
    const res = await request(
      `${s.url}/protect-stream.php?${query}&gate=${encodeURIComponent(gate)}`,
      { headers },
    );
    expect(res.statusCode).toBe(200);
    const chunks = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const first = await withDeadline(chunks.next(), 10_000, 'the first chunk');
    const firstText = first.done === true ? '' : first.value.toString('utf8');
    expect(firstText).toBe(expected.first);
    writeFileSync(gate, '');
    let whole = firstText;
    for (;;) {
      const next = await chunks.next();
      if (next.done === true) break;
      whole += next.value.toString('utf8');
    }
    expect(whole).toBe(expected.whole);
  }

  it(
    'X-Accel-Buffering: no: the first chunk reaches the client while PHP is still running',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm);
      await expectStreamed(s, 'sse=0', {}, { first: 'first\n', whole: 'first\nsecond: gate\n' });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'SSE passthrough (Accept: text/event-stream): the first event reaches the client while PHP is still running',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm);
      await expectStreamed(
        s,
        'sse=1',
        { accept: 'text/event-stream' },
        { first: 'data: first\n\n', whole: 'data: first\n\ndata: second: gate\n\n' },
      );
    },
    TEST_TIMEOUT_MS,
  );
});

describe('buffers and temp files', () => {
  it(
    'no temp file is left and none is held open after slow readers, aborted uploads and big responses',
    async () => {
      const tempDir = freshDir('askr-temp-');
      const fpm = await pool();
      // Small memory buffers: every body and response here spills to a temp file.
      const s = await sidecar(fpm, {
        'server.temp_dir': tempDir,
        'fastcgi.buffer_size': '16KiB',
        'server.body_memory_size': '16KiB',
      });
      const readers = await slowReaders(s, 4);
      // Their responses wait in temp files: else this test would check nothing.
      expect(openFilesUnder(tempDir).length).toBeGreaterThan(0);

      const responses = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const res = await request(`${s.url}/protect-big.php?mib=2`);
          return { status: res.statusCode, length: (await res.body.arrayBuffer()).byteLength };
        }),
      );
      expect(responses).toEqual(Array(4).fill({ status: 200, length: 2 * MIB }));

      const payload = randomBytes(MIB);
      const md5 = createHash('md5').update(payload).digest('hex');
      const uploads = await Promise.all(
        [payload, Readable.from([payload.subarray(0, MIB / 2), payload.subarray(MIB / 2)])].map(
          async (body) => {
            const res = await request(`${s.url}/protect-md5.php`, {
              method: 'POST',
              headers: { 'content-type': 'application/octet-stream' },
              body,
            });
            return { status: res.statusCode, body: await res.body.json() };
          },
        ),
      );
      expect(uploads).toEqual(Array(2).fill({ status: 200, body: { length: MIB, md5 } }));

      // Uploads cut midway: 300 kB of 1 MB sent (with Content-Length, and chunked), then gone.
      const part = payload.subarray(0, 300_000);
      const cut = [
        { head: UPLOAD_HEAD, body: part },
        {
          head: UPLOAD_HEAD.replace('Content-Length: 1000000', 'Transfer-Encoding: chunked'),
          body: Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part]),
        },
      ].flatMap((upload) => [upload, upload]);
      await Promise.all(
        cut.map(async ({ head, body }) => {
          const uploader = connect(s);
          uploader.write(head);
          await new Promise<void>((resolve, reject) =>
            uploader.write(body, (err) => (err ? reject(err) : resolve())),
          );
          uploader.destroy();
          await closed(uploader);
        }),
      );

      await destroyAll(readers);
      await until(() => s.http.inFlight() === 0, 10_000, 'the sidecar to end every request');
      const left = await settle(
        () => ({ files: readdirSync(tempDir), descriptors: openFilesUnder(tempDir) }),
        ({ files, descriptors }) => files.length === 0 && descriptors.length === 0,
        5_000,
      );
      expect(left).toEqual({ files: [], descriptors: [] });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'a 5 MiB upload reaches PHP intact, with Content-Length and chunked',
    async () => {
      const fpm = await pool();
      const s = await sidecar(fpm);
      const payload = randomBytes(5 * MIB);
      const md5 = createHash('md5').update(payload).digest('hex');
      const pieces = Array.from({ length: 80 }, (_, i) =>
        payload.subarray(i * 64 * 1024, (i + 1) * 64 * 1024),
      );
      for (const body of [payload, Readable.from(pieces)]) {
        const res = await request(`${s.url}/protect-md5.php`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body,
        });
        expect(res.statusCode).toBe(200);
        expect(await res.body.json()).toEqual({ length: payload.length, md5 });
      }
    },
    TEST_TIMEOUT_MS,
  );
});
