/**
 * An EXTERNAL php-fpm for the worker-protection tests: Debian's binary with a generated pool of a
 * given shape (static, dynamic, ondemand) on a unix socket in a private temp dir, as an operator
 * would run it. Unlike startTestFpm (the sidecar's own managed mode, always static) the sidecar
 * only sees an address, so its defaults for an external FPM apply. The status page is read over
 * raw FastCGI, beside the sidecar, never through it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { findPhpFpm } from '../../src/fpm/find-php-fpm.ts';
import { livePidsInGroup, signalGroup } from '../../src/fpm/process-group.ts';
import { parseFpmStatus, type FpmStatus } from '../../src/observability/fpm-status.ts';
import { phpWorkers } from './php-temp.ts';
import { endProcess, readTextOr } from './process.ts';
import { rawFastCgiRequest } from './raw-fastcgi.ts';
import { startTestSidecar, type TestSidecar } from './sidecar.ts';
import { until } from './wait.ts';

/** The process manager of the pool and its sizes (php-fpm's pm.* directives). */
export type FpmPoolShape =
  | { pm: 'static'; maxChildren: number }
  | {
      pm: 'dynamic';
      maxChildren: number;
      startServers: number;
      minSpareServers: number;
      maxSpareServers: number;
    }
  | { pm: 'ondemand'; maxChildren: number; processIdleTimeoutS?: number };

export interface FpmPool {
  /** 'unix:/tmp/askr-pool-XXXXXX/php-fpm.sock', for fastcgi.address or rawFastCgiRequest. */
  readonly address: string;
  /** pm.status_path of the pool: '/fpm-status'. */
  readonly statusPath: string;
  /** pid of the php-fpm master (it leads the process group of its workers). */
  readonly pid: number;
  /** php-fpm's own log (error_log, workers' output included): for failure messages. */
  log(): string;
  /**
   * The pool's status page (`?json`), read over a raw FastCGI connection of its own. It needs a
   * free worker: rejects after `timeoutMs` naming that cause when every worker is held.
   */
  readStatus(timeoutMs?: number): Promise<FpmStatus>;
  /** Kills the process group (SIGTERM, then SIGKILL after 3 s) and removes the dir. Idempotent. */
  stop(): Promise<void>;
}

const STATUS_PATH = '/fpm-status';

/** The php-fpm the tests run: ASKR_TEST_FPM_BINARY, else found as the managed mode finds it. */
function fpmBinary(): string {
  const binary = findPhpFpm(process.env['ASKR_TEST_FPM_BINARY'] ?? '');
  if (binary === null) {
    throw new Error(
      `The worker-protection tests need a real php-fpm and none was found. ` +
        `Run "node scripts/ensure-system.mjs test" (as root it installs Debian's php-fpm), ` +
        `or set ASKR_TEST_FPM_BINARY to a php-fpm binary.`,
    );
  }
  return binary;
}

function renderPool(dir: string, shape: FpmPoolShape): string {
  const pm: string[] = [`pm = ${shape.pm}`, `pm.max_children = ${shape.maxChildren}`];
  if (shape.pm === 'dynamic') {
    pm.push(
      `pm.start_servers = ${shape.startServers}`,
      `pm.min_spare_servers = ${shape.minSpareServers}`,
      `pm.max_spare_servers = ${shape.maxSpareServers}`,
    );
  }
  if (shape.pm === 'ondemand') {
    pm.push(`pm.process_idle_timeout = ${shape.processIdleTimeoutS ?? 10}s`);
  }
  return [
    '[global]',
    `pid = "${path.join(dir, 'php-fpm.pid')}"`,
    `error_log = "${path.join(dir, 'php-fpm.log')}"`,
    // "server reached pm.max_children" is a warning: it shows in log() when a test fails.
    'log_level = notice',
    'daemonize = no',
    '',
    '[www]',
    // As root the workers run as www-data, as in Debian's stock pool (PHP never runs as root; no
    // -R); the socket stays the master's (root's), 0600 in a 0700 dir: only the sidecar connects.
    ...workerLines(),
    `listen = "${path.join(dir, 'php-fpm.sock')}"`,
    'listen.mode = 0600',
    ...pm,
    'pm.max_requests = 0',
    `pm.status_path = ${STATUS_PATH}`,
    'catch_workers_output = yes',
    '',
  ].join('\n');
}

/** The pool's user/group lines as root (phpWorkers()); none otherwise, FPM keeps our user. */
function workerLines(): string[] {
  const who = phpWorkers();
  if (who === undefined) return [];
  const [uid, gid] = [process.getuid?.() ?? 0, process.getgid?.() ?? 0];
  return [
    `user = ${who.user}`,
    `group = ${who.group}`,
    `listen.owner = ${uid}`,
    `listen.group = ${gid}`,
  ];
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    // ENOENT / ECONNREFUSED while php-fpm is still starting: the caller tries again.
    socket.once('error', () => resolve(false));
  });
}

async function waitReady(child: ChildProcess, socketPath: string, logPath: string): Promise<void> {
  const readLog = (): string => fs.readFileSync(logPath, { encoding: 'utf8', flag: 'a+' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `php-fpm exited during start (${child.exitCode ?? child.signalCode ?? '?'}):\n${readLog()}`,
      );
    }
    if (await canConnect(socketPath)) return;
    if (Date.now() > deadline) {
      throw new Error(`php-fpm socket ${socketPath} not accepting after 10 s:\n${readLog()}`);
    }
    // No event tells when php-fpm listens: poll its socket.
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Starts php-fpm (foreground; as root its workers run as www-data, see workerLines) with a pool of
 * `shape` and resolves once its socket accepts. Rejects with php-fpm's log when it does not start.
 * The caller stops it; a test worker that exits first SIGKILLs the group on its way out.
 */
export async function startFpmPool(shape: FpmPoolShape): Promise<FpmPool> {
  const binary = fpmBinary();
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'askr-pool-')));
  const socketPath = path.join(dir, 'php-fpm.sock');
  const logPath = path.join(dir, 'php-fpm.log');
  const confPath = path.join(dir, 'php-fpm.conf');
  fs.writeFileSync(confPath, renderPool(dir, shape));

  const args = ['-F', '-y', confPath];
  // detached: php-fpm leads its own process group, which its workers join: one kill reaches all.
  const child = spawn(binary, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const spawned = await Promise.race([
    once(child, 'spawn').then(() => null),
    once(child, 'error').then(([err]) => err as Error),
  ]);
  if (spawned !== null || child.pid === undefined) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot run ${binary}: ${spawned?.message ?? 'no pid'}`, { cause: spawned });
  }
  const pid = child.pid;
  const killOnExit = (): void => void signalGroup(pid, 'SIGKILL');
  process.once('exit', killOnExit);

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', killOnExit);
      await endProcess(child, { killAfterMs: 3_000, send: (signal) => signalGroup(pid, signal) });
      // Workers die with their master; one that lingers (a stuck request) is killed here.
      signalGroup(pid, 'SIGKILL');
      await until(() => livePidsInGroup(pid).length === 0, 5_000, `php-fpm group ${pid} gone`);
      fs.rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await waitReady(child, socketPath, logPath);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${stderr}`, { cause: err });
  }

  const address = `unix:${socketPath}`;
  return {
    address,
    statusPath: STATUS_PATH,
    pid,
    log: () => readTextOr(logPath, '(php-fpm log gone: the pool was stopped)'),
    async readStatus(timeoutMs = 5_000): Promise<FpmStatus> {
      const pending = rawFastCgiRequest(address, {
        GATEWAY_INTERFACE: 'CGI/1.1',
        REQUEST_METHOD: 'GET',
        SCRIPT_NAME: STATUS_PATH,
        SCRIPT_FILENAME: STATUS_PATH,
        REQUEST_URI: `${STATUS_PATH}?json`,
        QUERY_STRING: 'json',
        SERVER_PROTOCOL: 'HTTP/1.1',
        REMOTE_ADDR: '127.0.0.1',
      });
      const res = await withDeadline(
        pending,
        timeoutMs,
        'the php-fpm status page (no worker was free to serve it?)',
      );
      const text = res.stdout.toString('utf8');
      const status = parseFpmStatus(text.slice(text.indexOf('\r\n\r\n') + 4));
      if (typeof status === 'string') throw new Error(`${status}: ${text}`);
      return status;
    },
    stop,
  };
}

/**
 * Resolves as `promise` does, or rejects after `timeoutMs` with an error naming `what` (a
 * function is called then, so the message can report progress). A late outcome is ignored.
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const name = typeof what === 'string' ? what : what();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name}`));
    }, timeoutMs);
  });
  // After the deadline the test has its error; what the promise does later does not matter.
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `count` clients at once, one GET of `url` each on its own connection, each given `timeoutMs`
 * for its head and body. Resolves with how many ended how: `{ '200': 63, '504': 1 }`, an
 * undici error code (UND_ERR_HEADERS_TIMEOUT) for a request that got no answer in time.
 */
export async function concurrentGets(
  url: string,
  count: number,
  timeoutMs: number,
): Promise<Record<string, number>> {
  const agent = new Agent({ pipelining: 1, connections: count });
  const outcomes = await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const res = await request(url, {
          dispatcher: agent,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        await res.body.text();
        return String(res.statusCode);
      } catch (err) {
        return (err as { code?: string }).code ?? String(err);
      }
    }),
  );
  await agent.close();
  const summary: Record<string, number> = {};
  for (const outcome of outcomes) summary[outcome] = (summary[outcome] ?? 0) + 1;
  return summary;
}

/**
 * A sidecar with default settings in front of `fpm` (an external pool, so the defaults a user
 * gets apply), scripts callable by name, plus `overrides`; `cleanups` gets its close().
 */
export async function sidecarBehind(
  fpm: FpmPool,
  cleanups: Array<() => Promise<void> | void>,
  overrides: Record<string, unknown> = {},
): Promise<TestSidecar> {
  const s = await startTestSidecar({
    'fastcgi.address': fpm.address,
    'server.php_scripts': 'true',
    ...overrides,
  });
  cleanups.push(() => s.close());
  return s;
}
