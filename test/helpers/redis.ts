/**
 * A real redis-server (Debian's) for the cluster tests, as the tests' php-fpm is real: a free
 * loopback port, a private temp dir, no persistence (`--save '' --appendonly no`, so a restart
 * comes back empty, like the recipes' Redis). It can be killed and restarted on the same port to
 * play a Redis outage. Missing redis-server is a failure naming the command that installs it,
 * never a skip. No vitest import and no Redis client: readiness is a raw `PING` over TCP.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { endProcess, freePort } from './process.ts';
import { findProgram } from './programs.ts';

export interface TestRedis {
  /** `redis://127.0.0.1:PORT/0`, for cluster.redis_url. */
  readonly url: string;
  readonly port: number;
  /** The server's log (stdout and stderr of every run, last 64 KiB): for failure messages. */
  log(): string;
  /**
   * Runs `redis-cli -h 127.0.0.1 -p PORT ...args`; resolves its stdout (e.g. "PONG\n"; an error
   * reply is stdout too), rejects with its stderr when it fails (Redis down: "Connection refused").
   */
  cli(...args: string[]): Promise<string>;
  /** SIGKILL: an outage as a crash looks (connections reset, nothing saved). Resolves once it exited. */
  kill(): Promise<void>;
  /**
   * Stops the server if it runs (SIGTERM), starts it again on the same port and resolves once it
   * answers PING. After kill() it brings Redis back, empty. Rejects after stop().
   */
  restart(): Promise<void>;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes its dir. Idempotent; final. */
  stop(): Promise<void>;
}

export interface TestRedisOptions {
  /** redis-server binary; default: found in PATH, /usr/bin, /usr/sbin. */
  binary?: string;
  /** How long start and restart wait for PING to be answered, ms (default 10 s). */
  readyTimeoutMs?: number;
}

const INSTALL_HINT =
  'Run "node scripts/ensure-system.mjs test" (as root it installs Debian\'s redis-server, ' +
  'which brings redis-cli).';
const LOG_LIMIT_BYTES = 64 * 1024;

function requireProgram(name: string, given?: string): string {
  const found = given ?? findProgram([name], ['/usr/bin', '/usr/sbin']);
  if (found === null || !fs.existsSync(found)) {
    throw new Error(
      `The cluster tests need a real ${name} and ${found === null ? 'none was found in PATH, /usr/bin or /usr/sbin' : `${found} does not exist`}. ${INSTALL_HINT}`,
    );
  }
  return found;
}

/** One `PING` over a fresh connection: resolves the first reply line ("+PONG", "-LOADING …"). */
async function ping(port: number, timeoutMs: number): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply within ${timeoutMs} ms`)));
  try {
    await once(socket, 'connect');
    socket.write('PING\r\n');
    let reply = '';
    while (!reply.includes('\r\n')) {
      const [chunk] = (await once(socket, 'data')) as [Buffer];
      reply += chunk.toString('latin1');
    }
    return reply.slice(0, reply.indexOf('\r\n'));
  } finally {
    socket.destroy();
  }
}

/**
 * Starts redis-server on a free loopback port. Rejects, naming the install command, when
 * redis-server (or redis-cli) is missing, and with the server's log when it does not come up.
 */
export async function startRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const binary = requireProgram('redis-server', options.binary);
  const cliBinary = requireProgram('redis-cli');
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'askr-redis-'));
  let output = '';
  let child: ChildProcess | null = null;
  let stopped = false;
  // A test that crashes must not leave a redis-server behind.
  const killOnExit = (): void => {
    child?.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

  async function spawnOn(port: number): Promise<void> {
    const proc = spawn(
      binary,
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
        ...['--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', ''],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-LOG_LIMIT_BYTES);
    };
    proc.stdout?.on('data', collect);
    proc.stderr?.on('data', collect);
    // Resolves once its output is all read, so a failure message has the reason in it.
    const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
    let spawnError: Error | null = null;
    proc.on('error', (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + readyTimeoutMs;
    let last = 'not started';
    for (;;) {
      if (spawnError !== null) {
        throw new Error(`cannot run ${binary}: ${(spawnError as Error).message}. ${INSTALL_HINT}`);
      }
      if (!running(proc)) {
        await closed;
        throw new Error(
          `redis-server exited (${String(proc.exitCode ?? proc.signalCode)}) before answering PING on port ${port}:\n${output}`,
        );
      }
      try {
        last = await ping(port, 1000);
        if (last === '+PONG') return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(
          `redis-server did not answer PING on port ${port} within ${readyTimeoutMs} ms (last: ${last}):\n${output}`,
        );
      }
      await sleep(20);
    }
  }

  async function terminate(signal: NodeJS.Signals): Promise<void> {
    if (child !== null) await endProcess(child, { signal, killAfterMs: 5000 });
  }

  // The port can be taken between freePort() and the bind: try another one then.
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await spawnOn(port);
      break;
    } catch (err) {
      if (attempt >= 3 || !output.includes('Address already in use')) {
        process.removeListener('exit', killOnExit);
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    log: () => output,
    cli(...args: string[]): Promise<string> {
      return new Promise((resolve, reject) => {
        execFile(
          cliBinary,
          ['-h', '127.0.0.1', '-p', String(port), ...args],
          { timeout: 10_000 },
          // A failed command's message has redis-cli's stderr ("Could not connect …") in it.
          (err, stdout) => {
            if (err)
              reject(new Error(`redis-cli ${args.join(' ')}: ${err.message}`, { cause: err }));
            else resolve(stdout);
          },
        );
      });
    },
    kill: () => terminate('SIGKILL'),
    async restart(): Promise<void> {
      if (stopped) throw new Error('restart() after stop(): start a new Redis instead');
      await terminate('SIGTERM');
      await spawnOn(port);
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      await terminate('SIGTERM');
      process.removeListener('exit', killOnExit);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
