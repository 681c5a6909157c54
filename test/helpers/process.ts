/**
 * Start-up and shut-down plumbing shared by the helpers that run a real server (nginx, MariaDB,
 * Redis, php-fpm): a free loopback port, stopping a child with a SIGKILL fallback, reading a log
 * that may be gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';

/** A port of 127.0.0.1 that was free a moment ago (the caller binds it right after, or retries). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Whether `child` has not exited yet (neither an exit code nor a signal). */
export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

export interface EndProcessOptions {
  /** The first signal (default SIGTERM). */
  signal?: NodeJS.Signals;
  /** SIGKILL after this many ms without an exit. */
  killAfterMs: number;
  /** How a signal is sent (default `child.kill`; e.g. to a whole process group instead). */
  send?: (signal: NodeJS.Signals) => void;
  /** Whether it still runs (default isRunning(child)); when false, nothing is sent. */
  running?: () => boolean;
}

/** Sends `signal` to a running `child`, SIGKILL after `killAfterMs`; resolves once it exited. */
export async function endProcess(child: ChildProcess, options: EndProcessOptions): Promise<void> {
  const running = options.running ?? (() => isRunning(child));
  if (!running()) return;
  const send = options.send ?? ((signal: NodeJS.Signals) => void child.kill(signal));
  const exited = once(child, 'exit');
  send(options.signal ?? 'SIGTERM');
  const timer = setTimeout(() => send('SIGKILL'), options.killAfterMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** The text of `file`, or `missing` when it cannot be read (not written yet, or removed). */
export function readTextOr(file: string, missing: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return missing;
  }
}

/** What a finished command printed and how it ended. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `argv` to its end with this process's environment minus every ASKR_* variable (the test
 * runner's own must not leak into a CLI under test), plus `env`; collects stdout and stderr.
 */
export async function runCommand(
  argv: readonly string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CommandResult> {
  const base = Object.entries(process.env).filter(([k]) => !k.startsWith('ASKR_'));
  const [cmd = '', ...args] = argv;
  const child = spawn(cmd, args, {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: { ...Object.fromEntries(base), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}
