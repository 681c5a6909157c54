/**
 * The publishing path end to end with real parts: the datagram ingress bound on a temp Unix socket,
 * the real PHP CLI publishing through php/src/askr.php (fixtures-php/publish/), and raw datagrams
 * sent from Node with node-unix-socket. Covers the shared vectors (parse and PHP byte equality),
 * errors PHP reports, a 10,000-message burst from 8 processes, and the socket file's lifecycle.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DgramSocket } from 'node-unix-socket';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  encodeDatagram,
  type DatagramLimits,
  type DatagramMessage,
} from '../src/broadcast/datagram-codec.ts';
import {
  startDatagramIngress,
  type DatagramIngress,
  type DatagramIngressOptions,
} from '../src/broadcast/datagram-ingress.ts';
import { ErrorCodes, SidecarError } from '../src/errors.ts';
import { phpTempDir } from './helpers/php-temp.ts';
import { rawFastCgiRequest, scriptParams } from './helpers/raw-fastcgi.ts';

const root = new URL('..', import.meta.url).pathname;
const vectorsFile = join(root, 'test/vectors/datagram-v1.json');
const vectorsScript = join(root, 'fixtures-php/publish/vectors.php');
const burstScript = join(root, 'fixtures-php/publish/burst.php');
const fpmScript = join(root, 'fixtures-php/publish/fpm-publish.php');
const shim = join(root, 'php/src/askr.php');
const run = promisify(execFile);

interface Vector {
  name: string;
  call: { channels: string | string[]; data?: string; data_base64?: string } | null;
  datagram_base64: string;
  expect: { ok: true; message: Record<string, unknown> } | { ok: false; reason: string };
}
const vectors = JSON.parse(readFileSync(vectorsFile, 'utf8')) as Vector[];
const limits: DatagramLimits = {
  maxDatagramBytes: 65536,
  maxChannelNameLength: 128,
  maxChannels: 32,
};

let dir: string;
const open: DatagramIngress[] = [];
beforeAll(async () => {
  // The FPM workers (www-data when the tests run as root) reach the sockets made in it.
  dir = await phpTempDir('askr-dg-');
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((ingress) => ingress.close()));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const freshPath = (): string => join(dir, `s${++counter}.sock`);

/** A started ingress and what it delivered, with event-driven waits. */
async function start(overrides: Partial<DatagramIngressOptions> = {}) {
  const messages: DatagramMessage[] = [];
  const rejects: { reason: string; detail: string }[] = [];
  const logLines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  const changed = (): void => waiters.splice(0).forEach((wake) => wake());
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const ingress = await startDatagramIngress({
    path: freshPath(),
    mode: 0o660,
    group: '',
    limits,
    logger,
    onMessage: (message) => {
      // The stand-in hub refuses channel "boom", to exercise 'rejected_by_hub'.
      if (message.channels[0] === 'boom') throw new Error('hub refused');
      messages.push(message);
      changed();
    },
    onReject: (reason, detail) => {
      rejects.push({ reason, detail });
      changed();
    },
    ...overrides,
  });
  open.push(ingress);
  /** Resolves once `done()` holds (checked on every delivery); fails after 20 s. */
  const until = (done: () => boolean): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`timed out: ${messages.length} messages, ${rejects.length} rejects`));
      }, 20_000);
      const check = (): void => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else {
          waiters.push(check);
        }
      };
      check();
    });
  return { ingress, messages, rejects, logLines, until };
}

/** start() that must fail: returns the SidecarError (code DATAGRAM) it failed with. */
async function startError(overrides: Partial<DatagramIngressOptions>): Promise<SidecarError> {
  const err: unknown = await start(overrides).then(
    () => new Error('the ingress started'),
    (reason: unknown) => reason,
  );
  expect(err).toBeInstanceOf(SidecarError);
  expect((err as SidecarError).code).toBe(ErrorCodes.DATAGRAM);
  return err as SidecarError;
}

function php(args: string[], socketPath: string, env: Record<string, string> = {}) {
  return run('php', args, {
    env: { ...process.env, ASKR_SOCKET: socketPath, ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Runs askr_publish once in a fresh PHP process; returns its result and askr_last_error(). */
async function phpPublish(socketPath: string, call: string, env: Record<string, string> = {}) {
  const code = `require ${JSON.stringify(shim)}; $ok = ${call}; echo json_encode(['ok' => $ok, 'error' => askr_last_error()]);`;
  const { stdout, stderr } = await php(
    ['-d', 'display_errors=stderr', '-r', code],
    socketPath,
    env,
  );
  expect(stderr).toBe(''); // the shim never warns
  return JSON.parse(stdout) as { ok: boolean; error: string | null };
}

function asVectorMessage(message: DatagramMessage): Record<string, unknown> {
  const { channels, event, id, close, socket, data } = message;
  return {
    channels,
    ...(event === undefined ? {} : { event }),
    ...(id === undefined ? {} : { id }),
    close,
    ...(socket === undefined ? {} : { socket }),
    data_base64: data.toString('base64'),
  };
}

/** Sends raw datagrams from Node, one after the other. */
async function sendRaw(path: string, datagrams: Buffer[]): Promise<void> {
  const sender = new DgramSocket();
  try {
    for (const datagram of datagrams) {
      await new Promise<void>((resolve, reject) => {
        sender.sendTo(datagram, 0, datagram.length, path, (err) => {
          if (err === undefined) resolve();
          else reject(err);
        });
      });
    }
  } finally {
    sender.close();
  }
}

/** A socket file nobody serves: bound, then closed without unlink (a crashed sidecar). */
function staleSocket(path: string): void {
  const socket = new DgramSocket();
  socket.bind(path);
  socket.close();
}

describe('shared vectors through real PHP', () => {
  it('askr_encode_datagram matches every vector byte for byte and refuses the invalid calls', async () => {
    const { stdout } = await run('php', [vectorsScript, 'encode', vectorsFile]);
    const results = JSON.parse(stdout) as { name: string; datagram_base64: string | null }[];
    const withCall = vectors.filter((v) => v.call !== null);
    expect(results.map((r) => r.name)).toEqual(withCall.map((v) => v.name));
    for (const [i, vector] of withCall.entries()) {
      const expected = vector.expect.ok ? vector.datagram_base64 : null;
      expect({ name: vector.name, datagram: results[i]?.datagram_base64 }).toEqual({
        name: vector.name,
        datagram: expected,
      });
    }
  });

  it('askr_publish delivers every valid vector as the vector says, in order', async () => {
    const { ingress, messages, rejects, until } = await start();
    const { stdout } = await php([vectorsScript, 'publish', vectorsFile], ingress.path);
    const results = JSON.parse(stdout) as { name: string; ok: boolean; error: string | null }[];
    const withCall = vectors.filter((v) => v.call !== null);
    for (const [i, vector] of withCall.entries()) {
      const result = results[i];
      expect(result?.name).toBe(vector.name);
      expect(result?.ok).toBe(vector.expect.ok);
      if (!vector.expect.ok) expect(result?.error).toMatch(/\w/);
    }
    const expected = withCall.flatMap((v) => (v.expect.ok ? [v.expect.message] : []));
    await until(() => messages.length >= expected.length);
    expect(messages.map(asVectorMessage)).toEqual(expected);
    expect(rejects).toEqual([]);
  });

  it('raw vector datagrams are parsed or rejected with the vector reason', async () => {
    const { ingress, messages, rejects, until } = await start();
    // Interleave each datagram with a marker so each result can be matched to its vector.
    const marker = encodeDatagram({ channels: 'marker', data: '' });
    const datagrams = vectors.flatMap((v) => [Buffer.from(v.datagram_base64, 'base64'), marker]);
    await sendRaw(ingress.path, datagrams);
    await until(() => messages.filter((m) => m.channels[0] === 'marker').length === vectors.length);
    expect(rejects.map((r) => r.reason)).toEqual(
      vectors.flatMap((v) => (v.expect.ok ? [] : [v.expect.reason])),
    );
    expect(messages.filter((m) => m.channels[0] !== 'marker').map(asVectorMessage)).toEqual(
      vectors.flatMap((v) => (v.expect.ok ? [v.expect.message] : [])),
    );
  });
});

describe('PHP publish errors', () => {
  it('returns false with the reason when no socket exists', async () => {
    const path = join(dir, 'absent.sock');
    const result = await phpPublish(path, `askr_broadcast('orders', 'x')`);
    expect(result.ok).toBe(false);
    expect(result.error).toContain(path);
    expect(result.error).toMatch(/No such file or directory/);
  });

  it('returns false with the reason when the socket file is stale', async () => {
    const path = freshPath();
    staleSocket(path);
    const result = await phpPublish(path, `askr_broadcast('orders', 'x')`);
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/Connection refused/);
  });

  it('refuses a datagram over ASKR_MAX_DATAGRAM and delivers one exactly at it', async () => {
    const { ingress, messages, until } = await start();
    const header = '{"channel":"big"}\n';
    const tooLarge = await phpPublish(ingress.path, `askr_publish('big', str_repeat('x', 70000))`);
    expect(tooLarge.ok).toBe(false);
    expect(tooLarge.error).toMatch(/datagram is 70018 bytes; the limit is 65534/);
    const over = await phpPublish(
      ingress.path,
      `askr_publish('big', str_repeat('y', 65535 - ${header.length}))`,
    );
    expect(over.ok).toBe(false);
    const fits = 65534 - header.length;
    expect(await phpPublish(ingress.path, `askr_publish('big', str_repeat('z', ${fits}))`)).toEqual(
      {
        ok: true,
        error: null,
      },
    );
    await until(() => messages.length === 1);
    expect(messages[0]?.data.equals(Buffer.alloc(fits, 'z'))).toBe(true);
  });

  it('a datagram the library would truncate is rejected as too_large, never delivered cut', async () => {
    const { ingress, messages, rejects, until } = await start();
    const env = { ASKR_MAX_DATAGRAM: '200000' }; // let PHP send what the sidecar cannot take
    for (const size of [65535, 66000, 150000]) {
      const result = await phpPublish(
        ingress.path,
        `askr_publish('big', str_repeat('x', ${size}))`,
        env,
      );
      expect(result.ok).toBe(true);
    }
    await until(() => rejects.length === 3);
    expect(rejects.map((r) => r.reason)).toEqual(['too_large', 'too_large', 'too_large']);
    expect(messages).toEqual([]);
  });

  it('reconnects once when the sidecar was restarted under a long-lived PHP process', async () => {
    const path = freshPath();
    // PHP starts first: node-unix-socket leaves FD_CLOEXEC off, so a child spawned after an
    // ingress holds that ingress's socket open (see datagram-ingress.ts). An FPM worker of an
    // external pool, which this models, never inherits it.
    const code = `require ${JSON.stringify(shim)}; fgets(STDIN);
      echo askr_publish('re', 'one') ? "1\\n" : "0\\n"; fgets(STDIN);
      echo askr_publish('re', 'two') ? '1' : '0', ' ', askr_last_error() ?? '';`;
    const child = spawn('php', ['-r', code], { env: { ...process.env, ASKR_SOCKET: path } });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = once(child, 'exit');
    const first = await start({ path });
    child.stdin.write('\n');
    await first.until(() => first.messages.length === 1);
    await first.ingress.close();
    const second = await start({ path });
    child.stdin.end('\n');
    expect(await exited).toEqual([0, null]);
    expect(out).toBe('1\n1 '); // the second publish succeeded, askr_last_error() is null
    await second.until(() => second.messages.length === 1);
    expect(second.messages[0]?.data.toString()).toBe('two');
  });
});

describe('under php-fpm', () => {
  it('publishes with ASKR_SOCKET from $_SERVER and askr_subscribe sets X-Askr-Subscribe', async () => {
    // Publishers as the sidecar in front of the shared (managed) pool describes them: as root the
    // socket's group becomes the workers' group, so they may send (mode 0660).
    const { ingress, messages, logLines, until } = await start({
      php: { user: '', group: '', source: 'the managed pool' },
    });
    const response = await rawFastCgiRequest(
      inject('fpmAddress'),
      scriptParams(fpmScript, { ASKR_SOCKET: ingress.path }),
    );
    const [head = '', body = ''] = response.stdout.toString().split('\r\n\r\n');
    expect(head.split('\r\n')).toContain('X-Askr-Subscribe: orders, audit');
    expect(JSON.parse(body)).toEqual({ ok: true, error: null });
    await until(() => messages.length === 1);
    expect(messages[0]).toMatchObject({ channels: ['orders'], event: 'fpm', close: false });
    expect(messages[0]?.data.toString()).toBe('from fpm\nline 2');
    // No "PHP workers ... cannot publish" warning: the socket and its directory let them in.
    expect(logLines.filter((line) => line['level'] === 40)).toEqual([]);
  });
});

describe('burst', () => {
  it('8 PHP processes x 1,250 messages: all 10,000 arrive, in order per publisher', async () => {
    const { ingress, messages, rejects, until } = await start();
    const publishers = 8;
    const each = 1250;
    const runs = Array.from({ length: publishers }, (_, p) =>
      php([burstScript, String(p), String(each)], ingress.path),
    );
    await Promise.all(runs);
    await until(() => messages.length === publishers * each);
    const next = new Array<number>(publishers).fill(0);
    for (const message of messages) {
      expect(message.event).toBe('burst');
      const [p, n] = message.data.toString().split(':').map(Number) as [number, number];
      expect(n).toBe(next[p]);
      next[p] = n + 1;
    }
    expect(next).toEqual(new Array<number>(publishers).fill(each));
    expect(rejects).toEqual([]);
  });
});

describe('socket file lifecycle', () => {
  it('creates the parent directory, applies the mode, and unlinks the socket on close', async () => {
    const path = join(dir, 'nested', 'deeper', 'askr.sock');
    const { ingress } = await start({ path, mode: 0o600 });
    expect(statSync(join(dir, 'nested', 'deeper')).isDirectory()).toBe(true);
    const stat = statSync(path);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    await ingress.close();
    expect(existsSync(path)).toBe(false);
  });

  it('applies mode 0660 and a group given by name or by gid', async () => {
    const gid = process.getgid?.() ?? 0;
    const name = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .map((line) => line.split(':'))
      .find((fields) => fields[2] === String(gid))?.[0];
    expect(name).toBeDefined();
    for (const group of [name ?? '', String(gid)]) {
      const { ingress } = await start({ group });
      const stat = statSync(ingress.path);
      expect(stat.mode & 0o777).toBe(0o660);
      expect(stat.gid).toBe(gid);
    }
  });

  it('refuses an unknown group and leaves no socket behind', async () => {
    const path = freshPath();
    const err = await startError({ path, group: 'no-such-group-askr' });
    expect(err.message).toContain('"no-such-group-askr"');
    expect(existsSync(path)).toBe(false);
  });

  it('replaces a stale socket file and serves on it', async () => {
    const path = freshPath();
    staleSocket(path);
    expect(statSync(path).isSocket()).toBe(true);
    const { messages, until } = await start({ path });
    expect(await phpPublish(path, `askr_broadcast('orders', 'after restart')`)).toEqual({
      ok: true,
      error: null,
    });
    await until(() => messages.length === 1);
  });

  it('refuses a path that is a regular file and never deletes it', async () => {
    const path = freshPath();
    writeFileSync(path, 'precious');
    const err = await startError({ path });
    expect(err.message).toContain(`${path} exists and is not a socket`);
    expect(readFileSync(path, 'utf8')).toBe('precious');
  });

  it('refuses to start on a socket a live ingress is bound to, which keeps working', async () => {
    const live = await start();
    const err = await startError({ path: live.ingress.path });
    expect(err.message).toBe(`another sidecar is bound to ${live.ingress.path}`);
    expect(await phpPublish(live.ingress.path, `askr_broadcast('orders', 'still here')`)).toEqual({
      ok: true,
      error: null,
    });
    await live.until(() => live.messages.length === 1);
    expect(live.rejects).toEqual([]); // the probe sent no datagram
  });
});

describe('rejects', () => {
  it('reports each bad datagram with its reason and logs once per reason per window', async () => {
    const { ingress, messages, rejects, logLines, until } = await start();
    const good = encodeDatagram({ channels: 'ok', data: 'fine' });
    await sendRaw(ingress.path, [
      Buffer.alloc(0),
      Buffer.from('{"channel":"a"}'),
      Buffer.from('{nope}\nx'),
      Buffer.from('{nope}\ny'),
      Buffer.from('{"channel":"bad name"}\nx'),
      encodeDatagram({ channels: 'a', data: 'x', event: 'a\rb' }),
      Buffer.alloc(65535, 0x61),
      Buffer.alloc(70000, 0x61),
      encodeDatagram({ channels: 'boom', data: 'x' }),
      good,
    ]);
    await until(() => messages.length === 1);
    expect(rejects.map((r) => r.reason)).toEqual([
      'empty',
      'no_header_line',
      'bad_json',
      'bad_json',
      'bad_channel',
      'bad_event',
      'too_large',
      'too_large',
      'rejected_by_hub',
    ]);
    expect(rejects.at(-1)?.detail).toBe('hub refused');
    expect(messages[0]?.data.toString()).toBe('fine');

    const warns = () => logLines.filter((line) => line['level'] === 40);
    // One line per reason so far: the second bad_json and too_large were only counted.
    expect(warns().map((line) => [line['reason'], line['count']])).toEqual([
      ['empty', 1],
      ['no_header_line', 1],
      ['bad_json', 1],
      ['bad_channel', 1],
      ['bad_event', 1],
      ['too_large', 1],
      ['rejected_by_hub', 1],
    ]);
    await ingress.close(); // flushes the counts not yet logged
    expect(
      warns()
        .slice(7)
        .map((line) => [line['reason'], line['count']]),
    ).toEqual([
      ['bad_json', 1],
      ['too_large', 1],
    ]);
  });
});
