/**
 * CPU accounting for a benchmark window, from /proc (Linux): CPU time used by each process group
 * (server, php-fpm, load generator) and by the whole machine, so the report can say who used the
 * 2 shared cores and whether something else was running; and the wait for a quiet machine before
 * a measurement. Values are in % of one core unless a name says cores or share.
 * Invariant: a process that exits inside the window loses its share (the benchmark's do not).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** USER_HZ: 100 on every Linux architecture Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

export interface CpuSnapshot {
  readonly atMs: number;
  /** Ticks used so far by the processes of each labelled group. */
  readonly groups: ReadonlyMap<string, number>;
  /** Busy ticks of the whole machine (all CPUs). */
  readonly machineBusy: number;
}

/** Ticks (utime + stime) per process group id, for the groups asked. */
function groupTicks(pgids: ReadonlySet<number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited between readdir and read
    }
    // "pid (comm) state ppid pgrp ... utime stime": comm may contain spaces; cut at the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    if (!pgids.has(pgrp)) continue;
    const ticks = Number(fields[11]) + Number(fields[12]);
    out.set(pgrp, (out.get(pgrp) ?? 0) + ticks);
  }
  return out;
}

/** Busy and total (busy + idle + iowait) ticks of the whole machine (all CPUs) since boot. */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is in user already)
  const [, user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .map(Number);
  const busy =
    (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy, total: busy + (idle ?? 0) + (iowait ?? 0) };
}

function machineBusyTicks(): number {
  return machineTicks().busy;
}

/** Reads the counters now. `groups`: label -> process group id (null: not running). */
export function cpuSnapshot(groups: ReadonlyMap<string, number | null>): CpuSnapshot {
  const pgids = new Set<number>();
  for (const pgid of groups.values()) if (pgid !== null) pgids.add(pgid);
  const ticks = groupTicks(pgids);
  const byLabel = new Map<string, number>();
  for (const [label, pgid] of groups)
    byLabel.set(label, pgid === null ? 0 : (ticks.get(pgid) ?? 0));
  return { atMs: performance.now(), groups: byLabel, machineBusy: machineBusyTicks() };
}

/**
 * % of one core used between two snapshots, per label, plus `machine` (everything) and `other`
 * (machine minus the labelled groups: other users of the box, the benchmark's own Node, the kernel).
 */
export function cpuUsage(a: CpuSnapshot, b: CpuSnapshot): Map<string, number> {
  const seconds = (b.atMs - a.atMs) / 1000;
  const pct = (ticks: number): number => (ticks / CLOCK_TICKS_PER_SECOND / seconds) * 100;
  const out = new Map<string, number>();
  let ours = 0;
  for (const [label, end] of b.groups) {
    const used = Math.max(0, end - (a.groups.get(label) ?? 0));
    ours += used;
    out.set(label, pct(used));
  }
  const machine = Math.max(0, b.machineBusy - a.machineBusy);
  out.set('machine', pct(machine));
  out.set('other', pct(Math.max(0, machine - ours)));
  return out;
}

/** % of one core the whole machine used over the next `ms` (a check that nothing else runs). */
export async function machineBusyPct(ms: number): Promise<number> {
  const before = cpuSnapshot(new Map());
  await new Promise((resolve) => setTimeout(resolve, ms));
  return cpuUsage(before, cpuSnapshot(new Map())).get('machine') ?? 0;
}

/** The process group of this process (the benchmark driver, and npm / the shell that ran it). */
export function ownProcessGroup(): number {
  const text = readFileSync('/proc/self/stat', 'latin1');
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[2]);
}

/** Ticks (utime + stime) used so far by every process of the given groups together. */
export function groupsTicks(pgids: Iterable<number>): number {
  let sum = 0;
  for (const ticks of groupTicks(new Set(pgids)).values()) sum += ticks;
  return sum;
}

/** How quiet the machine must be before a measurement, and how long to wait for it. */
export interface Quiet {
  /** Cores other processes may use over a 1 s window. */
  maxCores: number;
  /** Longest wait; then the measurement runs anyway and the reading says it was not quiet. */
  maxWaitMs: number;
}

/** The machine just before a measurement: the last 1 s window of awaitQuietMachine. */
export interface QuietReading {
  /** Share of the machine's CPU time (all cores) that was idle, in % (100: every core idle). */
  idlePct: number;
  /** Cores used by processes outside the benchmark (machine busy minus the benchmark's own). */
  othersCores: number;
  /** Time spent waiting, ms (at least the 1 s window). */
  waitedMs: number;
  /** Others fell under Quiet.maxCores (false: gave up after maxWaitMs). */
  quiet: boolean;
}

/**
 * Waits until processes outside the benchmark use fewer than `quiet.maxCores` cores over a 1 s
 * window, at most `quiet.maxWaitMs` (at least one window is always measured). `ownTicks` returns
 * the CPU ticks used so far by the benchmark's own processes (driver, servers, clients).
 */
export async function awaitQuietMachine(
  ownTicks: () => number,
  quiet: Quiet,
): Promise<QuietReading> {
  const started = performance.now();
  for (;;) {
    const m0 = machineTicks();
    const own0 = ownTicks();
    const t0 = performance.now();
    await sleep(1000);
    const m1 = machineTicks();
    const own1 = ownTicks();
    const seconds = (performance.now() - t0) / 1000;
    const total = Math.max(1, m1.total - m0.total);
    const othersTicks = Math.max(0, m1.busy - m0.busy - Math.max(0, own1 - own0));
    const reading: QuietReading = {
      idlePct: 100 * (1 - (m1.busy - m0.busy) / total),
      othersCores: othersTicks / CLOCK_TICKS_PER_SECOND / seconds,
      waitedMs: performance.now() - started,
      quiet: false,
    };
    reading.quiet = reading.othersCores < quiet.maxCores;
    if (reading.quiet || reading.waitedMs >= quiet.maxWaitMs) return reading;
  }
}
