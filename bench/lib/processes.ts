/**
 * Starts and stops the processes a whole-system benchmark needs: php-fpm (the sidecar's managed
 * pool code), nginx and the sidecar as child processes, each in its own process group.
 * Invariants: everything listens on 127.0.0.1 or a private Unix socket; every process started
 * here is registered in a ProcessSet, which stops them in reverse order (also on Ctrl-C and on
 * process exit, where the groups get SIGKILL synchronously).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { startManagedFpm, type ManagedFpm } from '../../src/fpm/managed-fpm.ts';
import { envWithoutAskr, sidecarModeEnv, type ServerMode } from './modes.ts';

/** Repository root (bench/lib/../..). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Something started by the benchmark that must be stopped. */
export interface Stoppable {
  readonly name: string;
  /** Process group to SIGKILL if the benchmark exits without stopping it; null when none. */
  readonly pgid: number | null;
  stop(): Promise<void>;
}

/**
 * Everything running, stopped in reverse start order. `stopAll` is idempotent; on process exit
 * (an uncaught error, process.exit) the remaining groups are killed synchronously.
 */
export class ProcessSet {
  readonly #items: Stoppable[] = [];
  #closed = false;
  readonly #onExit = (): void => {
    for (const item of this.#items) {
      if (item.pgid === null) continue;
      try {
        process.kill(-item.pgid, 'SIGKILL');
      } catch {
        // ESRCH: already gone; nothing can be reported while the process exits.
      }
    }
  };

  constructor() {
    process.on('exit', this.#onExit);
  }

  /**
   * Registers a started process. After stopAll() has begun (Ctrl-C), the process is stopped at
   * once and this throws, so a benchmark step racing with the interruption cannot leak one.
   */
  add<T extends Stoppable>(item: T): T {
    if (this.#closed) {
      void item.stop();
      throw new Error(`${item.name} started while the benchmark was stopping`);
    }
    this.#items.push(item);
    return item;
  }

  /** Stops one item and forgets it. */
  async stop(item: Stoppable): Promise<void> {
    const index = this.#items.indexOf(item);
    if (index >= 0) this.#items.splice(index, 1);
    await item.stop();
  }

  /** Stops everything, newest first; one failure does not keep the others running. */
  async stopAll(): Promise<void> {
    this.#closed = true;
    const errors: unknown[] = [];
    while (this.#items.length > 0) {
      const item = this.#items.pop();
      if (item === undefined) break;
      try {
        await item.stop();
      } catch (err) {
        errors.push(err);
      }
    }
    process.off('exit', this.#onExit);
    if (errors.length > 0) throw new AggregateError(errors, 'some processes failed to stop');
  }
}

/** A child process leading its own group, with the tail of its output kept for error messages. */
export interface ChildServer extends Stoppable {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Last lines of stdout and stderr. */
  output(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const OUTPUT_LINES = 40;

/**
 * Spawns `command` detached (its own process group: a terminal's Ctrl-C reaches only the
 * benchmark, which stops children in order). `stop()` sends `stopSignal`, waits `graceMs`, then
 * SIGKILLs the whole group. Throws when the spawn itself fails (ENOENT, EACCES).
 */
export async function spawnChild(
  name: string,
  command: string,
  args: readonly string[],
  options: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    stopSignal: NodeJS.Signals;
    graceMs: number;
    /**
     * Append the child's stdout to this file instead of a pipe: a server's access log must not be
     * throttled by (or cost CPU in) the benchmark's own process. output() then reads its tail.
     */
    stdoutFile?: string;
  },
): Promise<ChildServer> {
  const stdoutFd = options.stdoutFile === undefined ? null : openSync(options.stdoutFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'],
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } finally {
    // The child holds its own copy of the descriptor.
    if (stdoutFd !== null) closeSync(stdoutFd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: spawn gave no pid`);
  const lines: string[] = [];
  // Always read the pipes: a child blocked on a full pipe would distort the measurement.
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      lines.push(line);
      if (lines.length > OUTPUT_LINES) lines.shift();
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const output = (): string => {
    if (options.stdoutFile === undefined) return lines.join('\n');
    const tail = fileTail(options.stdoutFile, OUTPUT_LINES);
    return [...lines, ...(tail === '' ? [] : [`(${options.stdoutFile}:)`, tail])].join('\n');
  };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let stopping: Promise<void> | null = null;
  return {
    name,
    pgid: pid,
    child,
    pid,
    output,
    exited,
    stop(): Promise<void> {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(pid, options.stopSignal);
          } catch {
            // ESRCH: exited meanwhile; the group kill below still reaps leftovers.
          }
          const done = await Promise.race([
            exited.then(() => true),
            sleep(options.graceMs, false, { ref: false }),
          ]);
          if (!done) process.stderr.write(`bench: ${name} did not stop in time; SIGKILL\n`);
        }
        // Leftover workers of the group (nginx workers of a killed master) go too.
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // ESRCH: the group is empty, the normal case.
        }
        await exited;
      })();
      return stopping;
    },
  };
}

/** The last `count` non-blank lines of a file (at most its last 16 KiB); '' when unreadable. */
function fileTail(path: string, count: number): string {
  try {
    const size = statSync(path).size;
    const length = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(length);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, length, size - length);
    } finally {
      closeSync(fd);
    }
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-count)
      .join('\n');
  } catch {
    return ''; // not written yet: nothing to show
  }
}

/** A free TCP port on 127.0.0.1 (closed again before returning; fine for a local benchmark). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Polls `url` until it answers `expectStatus`, the child exits, or `timeoutMs` passes. Throws with
 * the child's output when it does not become ready.
 */
export async function waitForHttp(
  url: string,
  server: ChildServer,
  timeoutMs = 15_000,
  expectStatus = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`${server.name} exited during start-up:\n${server.output()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.status === expectStatus) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `${server.name} not ready at ${url} after ${timeoutMs} ms (${last}):\n${server.output()}`,
      );
    }
    await sleep(50);
  }
}

/**
 * php-fpm through the sidecar's own managed-pool code: `pm = static`, `maxChildren` workers,
 * never recycled (pm.max_requests = 0), on `<runDir>/php-fpm.sock`.
 */
export async function startBenchFpm(
  runDir: string,
  maxChildren: number,
  logger: Logger,
): Promise<{ fpm: ManagedFpm } & Stoppable> {
  const fpm = await startManagedFpm({
    binary: '',
    runDir,
    maxChildren,
    maxRequests: 0,
    requestTerminateTimeoutMs: 0,
    ini: {},
    env: {},
    restartBackoffMaxMs: 1_000,
    logger,
  });
  return { fpm, name: 'php-fpm', pgid: fpm.pid() ?? null, stop: () => fpm.stop() };
}

/** nginx (Debian's binary) in the foreground with its own master: `nginx -p dir -c conf`. */
export async function startNginx(
  binary: string,
  prefixDir: string,
  confPath: string,
): Promise<ChildServer> {
  // -e: Debian's build logs to stderr before the config is read; keep even that in the temp dir.
  return spawnChild(
    'nginx',
    binary,
    [
      '-p',
      prefixDir,
      '-e',
      join(prefixDir, 'error.log'),
      '-c',
      confPath,
      '-g',
      'daemon off; master_process on;',
    ],
    // SIGQUIT: graceful stop (workers finish what they have); the load has ended by then.
    { stopSignal: 'SIGQUIT', graceMs: 5_000 },
  );
}

/** Which entry bin/askr-sidecar.js will load, and whether a compiled one looks stale. */
export function sidecarEntry(): { entry: string; stale: boolean } {
  // Mirrors bin/askr-sidecar.js: in a checkout, on a Node that strips types, the sources run.
  if (existsSync(join(REPO_ROOT, 'src', 'cli.ts')) && Boolean(process.features.typescript)) {
    return {
      entry: 'src/cli.ts (TypeScript sources, as bin/askr-sidecar.js runs them)',
      stale: false,
    };
  }
  const built = join(REPO_ROOT, 'dist', 'cli.js');
  if (!existsSync(built)) return { entry: 'missing: run npm run build', stale: true };
  const builtAt = statSync(built).mtimeMs;
  return {
    entry: 'dist/cli.js (compiled build)',
    stale: newestMtime(join(REPO_ROOT, 'src')) > builtAt,
  };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(
      newest,
      entry.isDirectory() ? newestMtime(path) : entry.isFile() ? statSync(path).mtimeMs : 0,
    );
  }
  return newest;
}

/** Settings of the sidecar under test. */
export interface SidecarProcessOptions {
  listen: string;
  root: string;
  fpmAddress: string;
  /** Front controller (server.index). */
  index: string;
  /** Working directory: a directory without sidecar.toml, so only env and flags apply. */
  cwd: string;
  /** as-shipped: the sidecar's defaults; lean: the same with the access log off (lib/modes.ts). */
  mode: ServerMode;
  /** fastcgi.pool_size; 0 keeps the default (for an external FPM: a connection per request). */
  poolSize: number;
  /** metrics.listen: a free port of 127.0.0.1 instead of the default 9100. */
  metricsListen: string;
  /** broadcast.socket inside the run's directory instead of /run/askr/askr.sock. */
  broadcastSocket: string;
  /** The sidecar's stdout (access log and app log), appended to this file. */
  logFile: string;
}

/**
 * `node bin/askr-sidecar.js serve` (the Node running the benchmark, i.e. the pinned Node 24) with
 * its defaults but for the mode's settings (lib/modes.ts), listen, root, FPM address and front
 * controller; no inherited ASKR_* variable. SIGTERM drains.
 */
export function startSidecarProcess(options: SidecarProcessOptions): Promise<ChildServer> {
  const env: NodeJS.ProcessEnv = {
    ...envWithoutAskr(),
    ...sidecarModeEnv(options.mode, {
      metricsListen: options.metricsListen,
      broadcastSocket: options.broadcastSocket,
    }),
    ASKR_SERVER_INDEX: options.index,
    ...(options.poolSize > 0 ? { ASKR_FASTCGI_POOL_SIZE: String(options.poolSize) } : {}),
  };
  const nodeArgs = (process.env['BENCH_SIDECAR_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  return spawnChild(
    'sidecar',
    process.execPath,
    [
      ...nodeArgs,
      join(REPO_ROOT, 'bin', 'askr-sidecar.js'),
      'serve',
      '--listen',
      options.listen,
      '--root',
      options.root,
      '--fpm',
      options.fpmAddress,
    ],
    {
      env,
      cwd: options.cwd,
      stopSignal: 'SIGTERM',
      graceMs: 10_000,
      stdoutFile: options.logFile,
    },
  );
}

/**
 * The bare node:http server of bench/lib/node-ceiling.ts (Node's ceiling for the static
 * workload), run by the same Node binary as the sidecar: `file` served from memory at `urlPath`.
 */
export function startNodeCeiling(
  port: number,
  file: string,
  urlPath: string,
): Promise<ChildServer> {
  return spawnChild(
    'node-ceiling',
    process.execPath,
    [fileURLToPath(new URL('./node-ceiling.ts', import.meta.url)), String(port), file, urlPath],
    { env: envWithoutAskr(), stopSignal: 'SIGTERM', graceMs: 5_000 },
  );
}
