/**
 * Supervises one managed php-fpm master. Invariants: at most one master at a time; the master
 * leads its own process group, so a dead master's workers are killed with it; nothing is
 * restarted after stop(); the group gets SIGTERM when the Node process exits. Restarts back off
 * 250 ms doubling up to restartBackoffMaxMs, reset after 30 s of healthy running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError, toError } from '../errors.ts';
import { createFpmLogForwarder, type FpmLogForwarder } from './fpm-log.ts';
import type { ManagedFpm, ManagedFpmOptions } from './managed-fpm.ts';
import { describeIdentity, type PhpIdentity } from './php-identity.ts';
import { signalGroup } from './process-group.ts';

const START_TIMEOUT_MS = 10_000;
const INITIAL_BACKOFF_MS = 250;
const HEALTHY_RESET_MS = 30_000;
const PROBE_INTERVAL_MS = 20;

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** One spawned master. */
interface Run {
  proc: ChildProcess;
  pid: number | undefined;
  exit: Promise<ExitInfo>;
  exited: ExitInfo | undefined;
  /** Settles on 'close': the process ended and its stdout/stderr were read to the end. */
  closed: Promise<unknown>;
  log: FpmLogForwarder;
}

interface Gate {
  promise: Promise<void>;
  settled: boolean;
  resolve(): void;
  reject(err: Error): void;
}

function gate(): Gate {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Marks the rejection handled: a stop() while nobody awaits ready() must not crash the process;
  // callers of ready() still see the rejection on their own chain.
  promise.catch(() => undefined);
  const g: Gate = {
    promise,
    settled: false,
    resolve: () => ((g.settled = true), resolve()),
    reject: (err) => ((g.settled = true), reject(err)),
  };
  return g;
}

function describeExit(info: ExitInfo): string {
  if (info.error !== undefined) return info.error.message;
  return info.signal !== null ? `killed by ${info.signal}` : `exited with code ${info.code}`;
}

/** True once something accepts a connection on the Unix socket. */
function probe(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socketPath });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => (s.destroy(), resolve(false)));
  });
}

/** The ManagedFpm returned by startManagedFpm; start() must be awaited once before use. */
export class FpmSupervisor implements ManagedFpm {
  readonly address: string;
  readonly binary: string;
  readonly workers: PhpIdentity | undefined;
  readonly #args: string[];
  readonly #env: Record<string, string>;
  readonly #socketPath: string;
  readonly #pidFile: string;
  readonly #options: ManagedFpmOptions;
  readonly #logger: Logger;
  #current: Run | undefined;
  #started = false;
  #stopping: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #backoffMs = INITIAL_BACKOFF_MS;
  #healthySince: number | undefined;
  #readyGate = gate();
  // Sync kill on process exit: without it a sidecar that exits without stop() (an uncaught
  // exception, process.exit) leaves php-fpm holding the socket and the workers' memory.
  readonly #exitHook = (): void => {
    const run = this.#current;
    const pid = run?.exited === undefined ? run?.pid : undefined;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      // ESRCH: already gone. Nothing can be logged reliably while the process exits.
    }
  };

  constructor(
    binary: string,
    args: string[],
    env: Record<string, string>,
    socketPath: string,
    pidFile: string,
    options: ManagedFpmOptions,
    workers?: PhpIdentity,
  ) {
    this.binary = binary;
    this.workers = workers;
    this.address = `unix:${socketPath}`;
    this.#args = args;
    this.#env = env;
    this.#socketPath = socketPath;
    this.#pidFile = pidFile;
    this.#options = options;
    this.#logger = options.logger;
  }

  pid(): number | undefined {
    const run = this.#current;
    return run !== undefined && run.exited === undefined ? run.pid : undefined;
  }

  ready(): Promise<void> {
    return this.#readyGate.promise;
  }

  /** First start: failures are thrown (with php-fpm's stderr), never retried. */
  async start(): Promise<void> {
    process.on('exit', this.#exitHook);
    const run = this.#spawn();
    try {
      await this.#waitReady(run);
    } catch (err) {
      if (run.pid !== undefined) this.#signalGroup(run.pid, 'SIGKILL');
      await run.exit;
      // stderr may still be draining after 'exit': give it a moment so the message shows why.
      await Promise.race([run.closed, sleep(500, undefined, { ref: false })]);
      process.off('exit', this.#exitHook);
      const tail = run.log.tail().join('\n');
      throw new SidecarError(
        ErrorCodes.FPM_START,
        `php-fpm (${this.binary}) failed to start: ${toError(err).message}` +
          (tail === '' ? '' : `\n${tail}`),
        { cause: err },
      );
    }
    this.#started = true;
    this.#healthySince = Date.now();
    this.#readyGate.resolve();
    this.#logger.info(
      {
        pid: run.pid,
        binary: this.binary,
        address: this.address,
        // Who PHP runs as: the pool's user as root, else the sidecar's own.
        phpUser: this.workers === undefined ? 'the sidecar user' : describeIdentity(this.workers),
      },
      'managed php-fpm started',
    );
  }

  stop(timeoutMs = 10_000): Promise<void> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    clearTimeout(this.#restartTimer);
    if (this.#readyGate.settled) this.#readyGate = gate();
    this.#readyGate.reject(new SidecarError(ErrorCodes.FPM_START, 'managed php-fpm was stopped'));
    const run = this.#current;
    if (run?.pid !== undefined && run.exited === undefined) {
      const pid = run.pid;
      const exited = (ms: number): Promise<boolean> =>
        // ref: false, so a pending timer never holds the process open after FPM is gone.
        Promise.race([run.exit.then(() => true), sleep(ms, false, { ref: false })]);
      // SIGQUIT: FPM's graceful stop, workers finish their current request first.
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // ESRCH: it died on its own just now; run.exit settles at once.
      }
      if (!(await exited(timeoutMs))) {
        this.#logger.warn(
          { pid, timeoutMs },
          'php-fpm did not stop gracefully in time; sending SIGTERM',
        );
        this.#signalGroup(pid, 'SIGTERM');
        if (!(await exited(2_000))) {
          this.#logger.warn({ pid }, 'php-fpm ignored SIGTERM; sending SIGKILL');
          this.#signalGroup(pid, 'SIGKILL');
          await run.exit;
        }
      }
    }
    process.off('exit', this.#exitHook);
    fs.rmSync(this.#socketPath, { force: true });
    fs.rmSync(this.#pidFile, { force: true });
    this.#logger.info('managed php-fpm stopped');
  }

  /** signalGroup that logs instead of throwing (EPERM): it runs in event callbacks. */
  #signalGroup(pgid: number, signal: NodeJS.Signals): void {
    try {
      signalGroup(pgid, signal);
    } catch (err) {
      this.#logger.error({ err, pgid, signal }, 'cannot signal the php-fpm process group');
    }
  }

  #spawn(): Run {
    const proc = spawn(this.binary, this.#args, {
      env: this.#env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: the group signal reaches workers orphaned by a dead master, and a
      // terminal's Ctrl-C goes to the sidecar, which decides how FPM stops.
      detached: true,
    });
    const log = createFpmLogForwarder(this.#logger);
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream !== null)
        readline
          .createInterface({ input: stream, crlfDelay: Infinity })
          .on('line', (l) => log.line(l));
    }
    const run: Run = {
      proc,
      pid: proc.pid,
      exit: Promise.resolve({ code: null, signal: null }),
      exited: undefined,
      closed: new Promise((resolve) => proc.once('close', resolve)),
      log,
    };
    run.exit = new Promise<ExitInfo>((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
      proc.on('error', (error) => {
        // 'error' without a pid is a failed spawn (ENOENT, EACCES) and no 'exit' follows.
        if (proc.pid === undefined) resolve({ code: null, signal: null, error });
        else this.#logger.error({ err: error, pid: proc.pid }, 'php-fpm process error');
      });
    });
    void run.exit.then((info) => {
      run.exited = info;
      this.#onExit(run, info);
    });
    this.#current = run;
    return run;
  }

  async #waitReady(run: Run): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (run.exited !== undefined) throw new Error(describeExit(run.exited));
      if (await probe(this.#socketPath)) return;
      if (Date.now() >= deadline)
        throw new Error(`its socket did not accept connections within ${START_TIMEOUT_MS} ms`);
      await sleep(PROBE_INTERVAL_MS);
    }
  }

  #onExit(run: Run, info: ExitInfo): void {
    // Workers of a master that died abruptly stay in its group, still accepting on the old socket.
    if (run.pid !== undefined) this.#signalGroup(run.pid, 'SIGKILL');
    if (this.#current !== run || this.#stopping !== undefined || !this.#started) return;
    if (this.#readyGate.settled) this.#readyGate = gate();
    if (this.#healthySince !== undefined && Date.now() - this.#healthySince >= HEALTHY_RESET_MS) {
      this.#backoffMs = INITIAL_BACKOFF_MS;
    }
    this.#healthySince = undefined;
    const delayMs = this.#backoffMs;
    this.#backoffMs = Math.min(
      this.#backoffMs * 2,
      Math.max(this.#options.restartBackoffMaxMs, INITIAL_BACKOFF_MS),
    );
    this.#logger.error(
      {
        pid: run.pid,
        code: info.code,
        signal: info.signal,
        delayMs,
        stderr: run.log.tail().slice(-5),
      },
      `managed php-fpm ${describeExit(info)}; restarting in ${delayMs} ms`,
    );
    this.#restartTimer = setTimeout(() => this.#restart(), delayMs);
  }

  #restart(): void {
    this.#restartTimer = undefined;
    if (this.#stopping !== undefined) return;
    fs.rmSync(this.#socketPath, { force: true });
    try {
      this.#options.onRestart?.();
    } catch (err) {
      this.#logger.error({ err }, 'onRestart callback threw');
    }
    const run = this.#spawn();
    this.#logger.warn({ pid: run.pid }, 'managed php-fpm restarted');
    this.#waitReady(run).then(
      () => {
        if (this.#current !== run || this.#stopping !== undefined) return;
        this.#healthySince = Date.now();
        this.#readyGate.resolve();
        this.#logger.info({ pid: run.pid }, 'managed php-fpm ready again');
      },
      (err: unknown) => {
        // Exited: #onExit schedules the next attempt. Hung: kill it so #onExit does.
        if (run.exited === undefined && run.pid !== undefined) {
          this.#logger.error(
            { err, pid: run.pid },
            'restarted php-fpm did not become ready; killing it',
          );
          this.#signalGroup(run.pid, 'SIGKILL');
        }
      },
    );
  }
}
