/**
 * Process helpers for the SSE benchmark: spawn a server in its own process group, wait for its
 * port, read its memory from /proc, stop it (and its children) for sure. Every process started
 * through `spawnServer` is registered and killed by `stopAll()` on exit, errors and Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { awaitQuietMachine, type Quiet, type QuietReading } from '../lib/cpu.ts';
import { envWithoutAskr } from '../lib/modes.ts';

export interface Server {
  readonly name: string;
  readonly child: ChildProcess;
  /** The last lines the process wrote (stdout and stderr), for error messages. */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<Server>();
const OUTPUT_KEEP_CHARS = 8000;

/** How spawnServer runs a process, beyond its command line. */
export interface SpawnOptions {
  /**
   * Append stdout to this file instead of a pipe to the benchmark: a server's access log must not
   * cost the benchmark's process (which publishes) CPU, nor be throttled by it.
   */
  stdoutFile?: string;
  /** Do not pass the benchmark's ASKR_* variables on (the sidecar then runs its defaults). */
  withoutAskrEnv?: boolean;
}

/** Starts `cmd` detached (own process group, so stop() reaches its children too), in `cwd`. */
export function spawnServer(
  name: string,
  cmd: string,
  args: readonly string[],
  env: Record<string, string> = {},
  cwd?: string,
  options: SpawnOptions = {},
): Server {
  const stdoutFd = options.stdoutFile === undefined ? null : openSync(options.stdoutFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      env: { ...(options.withoutAskrEnv === true ? envWithoutAskr() : process.env), ...env },
      ...(cwd === undefined ? {} : { cwd }),
      stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'],
      detached: true,
    });
  } finally {
    // spawn() has handed the descriptor to the child synchronously; ours is no longer needed.
    if (stdoutFd !== null) closeSync(stdoutFd);
  }
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-OUTPUT_KEEP_CHARS);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const output = (): string => {
    if (options.stdoutFile === undefined) return out;
    let tail = '';
    try {
      tail = readFileSync(options.stdoutFile, 'utf8').slice(-OUTPUT_KEEP_CHARS);
    } catch {
      // not written yet: nothing to add
    }
    return `${out}\n(${options.stdoutFile}:)\n${tail}`;
  };
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const server: Server = {
    name,
    child,
    output,
    async stop(): Promise<void> {
      running.delete(server);
      if (child.exitCode === null && child.signalCode === null) {
        signalGroup(child, 'SIGTERM');
        const timedOut = await Promise.race([exited.then(() => false), sleep(5000, true)]);
        if (timedOut) signalGroup(child, 'SIGKILL');
      }
      await exited;
      // Workers of a master that exited first (php-fpm, nginx) share its group.
      signalGroup(child, 'SIGKILL');
    },
  };
  child.once('error', (err) => {
    out += `\nspawn error: ${err.message}`;
  });
  running.add(server);
  return server;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already gone, which is what we want.
  }
}

/** Stops every server still running (reverse start order). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].reverse().map((s) => s.stop()));
}

/**
 * Resolves once `host:port` accepts a TCP connection; throws with `what` and `output()` when
 * `exited()` says the process ended or after `timeoutMs`.
 */
export async function waitForListening(
  host: string,
  port: number,
  exited: () => boolean,
  what: string,
  output: () => string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited()) break;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on ${host}:${port}:\n${output()}`);
}

/** Resolves once `host:port` accepts a TCP connection; throws with the server's output after `timeoutMs`. */
export function waitForPort(
  server: Server,
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<void> {
  return waitForListening(
    host,
    port,
    () => server.child.exitCode !== null,
    server.name,
    () => server.output(),
    timeoutMs,
  );
}

/** A free TCP port on 127.0.0.1 (bound and released at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Pids of `rootPid` and all its descendants (from /proc/PID/task/TID/children). */
export function processTree(rootPid: number): number[] {
  const out: number[] = [];
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop();
    if (pid === undefined) break;
    out.push(pid);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tasks) {
      try {
        const children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
        if (children !== '') stack.push(...children.split(/\s+/).map(Number));
      } catch {
        // the thread exited meanwhile
      }
    }
  }
  return out;
}

export interface Memory {
  /** Sum of resident set sizes, bytes (shared pages count once per process). */
  rssBytes: number;
  /** Sum of proportional set sizes, bytes (shared pages split between the processes). */
  pssBytes: number;
}

/** RSS and PSS of a process tree, read from /proc/PID/smaps_rollup. */
export function treeMemory(rootPid: number): Memory {
  let rssBytes = 0;
  let pssBytes = 0;
  for (const pid of processTree(rootPid)) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    } catch {
      continue;
    }
    rssBytes += kib(text, /^Rss:\s+(\d+) kB/m);
    pssBytes += kib(text, /^Pss:\s+(\d+) kB/m);
  }
  return { rssBytes, pssBytes };
}

function kib(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m?.[1] === undefined ? 0 : Number(m[1]) * 1024;
}

/** CPU seconds (user + system) used so far by a process tree (live processes only). */
export function treeCpuSeconds(rootPid: number): number {
  const tick = 100; // USER_HZ: 100 on Linux
  let total = 0;
  for (const pid of processTree(rootPid)) {
    let stat = '';
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += (Number(fields[11]) + Number(fields[12])) / tick;
  }
  return total;
}

/** CPU seconds the whole machine spent busy (all cores) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0);
  return busy / 100;
}

/**
 * Measures what other processes on the machine (not `ownPids`' trees) use, in cores: the
 * benchmark shares a 2-core machine, and a measurement taken next to someone else's load is noise.
 */
export class OthersCpu {
  readonly #ownPids: () => readonly number[];
  #machine = 0;
  #own = 0;
  #at = 0;

  constructor(ownPids: () => readonly number[]) {
    this.#ownPids = ownPids;
    this.reset();
  }

  #ownSeconds(): number {
    return this.#ownPids().reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
  }

  reset(): void {
    this.#machine = machineBusySeconds();
    this.#own = this.#ownSeconds();
    this.#at = performance.now();
  }

  /** Cores used by others since reset() (own processes that exited meanwhile are not subtracted). */
  cores(): number {
    const wall = (performance.now() - this.#at) / 1000;
    if (wall <= 0) return 0;
    const others = machineBusySeconds() - this.#machine - (this.#ownSeconds() - this.#own);
    return Math.max(0, others / wall);
  }
}

/**
 * Waits (at most `quiet.maxWaitMs`) until processes other than `ownPids`' trees use fewer than
 * `quiet.maxCores` cores over a 1 s window; returns that window's reading (idle share, others).
 */
export function awaitQuiet(ownPids: () => readonly number[], quiet: Quiet): Promise<QuietReading> {
  return awaitQuietMachine(
    () => Math.round(ownPids().reduce((sum, pid) => sum + treeCpuSeconds(pid), 0) * 100),
    quiet,
  );
}

/**
 * Waits (at most `maxWaitMs`) until other processes use less than `maxCores` over a 1 s window;
 * returns the last reading, in cores.
 */
export async function waitForQuiet(
  ownPids: () => readonly number[],
  maxCores: number,
  maxWaitMs: number,
): Promise<number> {
  return (await awaitQuiet(ownPids, { maxCores, maxWaitMs })).othersCores;
}
