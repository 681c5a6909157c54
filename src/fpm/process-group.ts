/**
 * Process helpers for the managed php-fpm. The master is spawned detached, so it leads its own
 * process group and its workers share it: signalling the group reaches workers orphaned by a
 * master killed with SIGKILL. Liveness treats zombies as gone (they hold no socket and no memory).
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError } from '../errors.ts';

/** Sends `signal` to every process of group `pgid`. False when the group is empty. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
}

/** /proc/<pid>/stat fields, or null when the process does not exist (or /proc is absent). */
export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null; // ENOENT: no such process
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so cut at the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0] ?? '?', ppid: Number(rest[1]), pgrp: Number(rest[2]) };
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const stat = readProcStat(pid);
  if (stat !== null) return stat.state !== 'Z';
  try {
    process.kill(pid, 0);
    // No /proc entry but kill(0) succeeds: not Linux-like; trust kill.
    return !fs.existsSync('/proc/self/stat');
  } catch {
    return false;
  }
}

/** Pids of the live (non-zombie) processes of group `pgid`, found by scanning /proc. */
export function livePidsInGroup(pgid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProcStat(Number(name));
    if (stat !== null && stat.pgrp === pgid && stat.state !== 'Z') pids.push(Number(name));
  }
  return pids;
}

/** Polls until `pid` is gone or `timeoutMs` passes; true when gone. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
  return true;
}

// Orphans are re-parented to PID 1 or to a child subreaper (systemd --user, container inits).
const SUBREAPERS = new Set(['systemd', 'tini', 'dumb-init', 'docker-init', 'catatonit', 'init']);

function isOrphanParent(ppid: number): boolean {
  if (ppid === 1) return true;
  try {
    return SUBREAPERS.has(fs.readFileSync(`/proc/${ppid}/comm`, 'utf8').trim());
  } catch {
    return true; // the parent is gone too
  }
}

/**
 * A master from an earlier run of this runDir (the sidecar was SIGKILLed) is still serving the old
 * socket: stop it when it is an orphan; refuse to start when a live process still owns it.
 */
export async function reapStaleMaster(
  pidFile: string,
  confPath: string,
  logger: Logger,
): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch {
    return; // no pid file: nothing left over
  }
  if (!Number.isSafeInteger(pid) || pid <= 1 || !isAlive(pid)) return;
  let cmdline: string;
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return; // gone meanwhile
  }
  if (!cmdline.includes(confPath)) return; // the pid was reused by an unrelated process
  const ppid = readProcStat(pid)?.ppid;
  if (ppid === undefined) return; // gone meanwhile
  if (!isOrphanParent(ppid)) {
    throw new SidecarError(
      ErrorCodes.FPM_START,
      `php-fpm pid ${pid} (parent ${ppid}) already runs from ${path.dirname(confPath)}: stop that sidecar or use another run directory`,
    );
  }
  logger.warn({ pid }, 'stopping a php-fpm left over from an earlier run');
  signalGroup(pid, 'SIGTERM');
  if (!(await waitGone(pid, 3_000))) signalGroup(pid, 'SIGKILL');
  await waitGone(pid, 3_000);
}
