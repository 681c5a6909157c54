/**
 * Turns proxy-benchmark measurements into markdown: per-run rows, the medians and ratios per
 * mode (sidecar / nginx-default, / nginx-keepalive, / node-ceiling) and the pass/fail verdict
 * against the targets, per mode. Pure (data in, text out).
 * Invariant: a missing measurement shows as "n/a" and its target as not met, never as a pass.
 */
import type { QuietReading } from './cpu.ts';
import type { ServerMode } from './modes.ts';
import { median } from './stats.ts';
import type { WrkResult } from './wrk.ts';

export const SERVERS = ['sidecar', 'nginx-default', 'nginx-keepalive', 'node-ceiling'] as const;
export type ServerId = (typeof SERVERS)[number];
export const WORKLOADS = ['php', 'static'] as const;
export type Workload = (typeof WORKLOADS)[number];

/**
 * Whether `server` runs `workload`: node-ceiling is Node's ceiling for serving bytes (a bare
 * node:http server answering from memory); it has no PHP, so a PHP figure of it would mean nothing.
 */
export function serves(server: ServerId, workload: Workload): boolean {
  return server !== 'node-ceiling' || workload === 'static';
}

export interface Measurement {
  mode: ServerMode;
  server: ServerId;
  workload: Workload;
  round: number;
  wrk: WrkResult;
  /** % of one core: 'server', 'fpm', 'wrk', 'bench', 'other', 'machine'. */
  cpu: ReadonlyMap<string, number>;
  /** The machine just before the measured run. */
  quiet: QuietReading;
  /** Access-log bytes written during the measured run (null: the server keeps no log file). */
  accessLogBytes: number | null;
}

export interface Summary {
  mode: ServerMode;
  server: ServerId;
  workload: Workload;
  runs: number;
  /** Medians over the rounds. */
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Sums over the rounds. */
  non2xx: number;
  socketErrors: number;
  timeouts: number;
  cpu: ReadonlyMap<string, number>;
}

export interface Verdict {
  mode: ServerMode;
  name: string;
  measured: string;
  pass: boolean;
}

const WORKLOAD_LABEL: Record<Workload, string> = {
  php: 'PHP hello world',
  static: 'static 16 KiB',
};

/** Medians per (mode, server, workload) over all rounds. */
export function summarize(measurements: readonly Measurement[]): Summary[] {
  const out: Summary[] = [];
  const modes = [...new Set(measurements.map((m) => m.mode))];
  for (const mode of modes) {
    for (const workload of WORKLOADS) {
      for (const server of SERVERS) {
        const runs = measurements.filter(
          (m) => m.mode === mode && m.server === server && m.workload === workload,
        );
        if (runs.length === 0) continue;
        const cpu = new Map<string, number>();
        for (const label of runs[0]?.cpu.keys() ?? []) {
          cpu.set(label, median(runs.map((r) => r.cpu.get(label) ?? 0)));
        }
        out.push({
          mode,
          server,
          workload,
          runs: runs.length,
          requestsPerSec: median(runs.map((r) => r.wrk.requestsPerSec)),
          p50Ms: median(runs.map((r) => r.wrk.p50Ms)),
          p99Ms: median(runs.map((r) => r.wrk.p99Ms)),
          maxMs: median(runs.map((r) => r.wrk.maxMs)),
          non2xx: runs.reduce((n, r) => n + r.wrk.non2xx, 0),
          socketErrors: runs.reduce((n, r) => n + r.wrk.socketErrors, 0),
          timeouts: runs.reduce((n, r) => n + r.wrk.timeouts, 0),
          cpu,
        });
      }
    }
  }
  return out;
}

const fmtRate = (n: number): string =>
  Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
const fmtMs = (n: number): string =>
  !Number.isFinite(n) ? 'n/a' : n >= 100 ? `${Math.round(n)} ms` : `${n.toFixed(2)} ms`;
const fmtRatio = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const fmtPct = (n: number | undefined): string => (n === undefined ? 'n/a' : `${Math.round(n)}%`);
/** CPU time the server spent per request, in µs: % of one core -> seconds per second / rate. */
const fmtCpuPerRequest = (pct: number | undefined, rate: number): string =>
  pct === undefined || !(rate > 0) ? 'n/a' : `${Math.round((pct / 100) * (1e6 / rate))} µs`;
const fmtLogPerRequest = (bytes: number | null, requests: number): string =>
  bytes === null ? '-' : requests > 0 ? `${Math.round(bytes / requests)} B` : 'n/a';

function errorsCell(s: { non2xx: number; socketErrors: number; timeouts: number }): string {
  const parts: string[] = [];
  if (s.non2xx > 0) parts.push(`${s.non2xx} non-2xx`);
  if (s.socketErrors > 0) parts.push(`${s.socketErrors} socket`);
  if (s.timeouts > 0) parts.push(`${s.timeouts} timeouts`);
  return parts.length === 0 ? '0' : parts.join(', ');
}

/** One row per run, in the order measured, with the machine's idle share before it. */
export function runsTable(measurements: readonly Measurement[]): string {
  const rows = [
    '| round | mode | workload | server | req/s | p50 | p99 | max | errors | CPU server | server CPU/req | CPU php-fpm | CPU wrk | idle before | CPU others | access log/req |',
    '|---:|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const m of measurements) {
    const idle = `${Math.round(m.quiet.idlePct)}%${m.quiet.quiet ? '' : ' (not quiet)'}`;
    rows.push(
      `| ${m.round} | ${m.mode} | ${WORKLOAD_LABEL[m.workload]} | ${m.server} | ${fmtRate(m.wrk.requestsPerSec)} | ` +
        `${fmtMs(m.wrk.p50Ms)} | ${fmtMs(m.wrk.p99Ms)} | ${fmtMs(m.wrk.maxMs)} | ${errorsCell(m.wrk)} | ` +
        `${fmtPct(m.cpu.get('server'))} | ${fmtCpuPerRequest(m.cpu.get('server'), m.wrk.requestsPerSec)} | ` +
        `${fmtPct(m.cpu.get('fpm'))} | ${fmtPct(m.cpu.get('wrk'))} | ${idle} | ${fmtPct(m.cpu.get('other'))} | ` +
        `${fmtLogPerRequest(m.accessLogBytes, m.wrk.requests)} |`,
    );
  }
  return rows.join('\n');
}

/** Medians per server and workload, for one mode. */
export function summaryTable(summaries: readonly Summary[], mode: ServerMode): string {
  const rows = [
    '| workload | server | runs | req/s | p50 | p99 | errors | CPU server | server CPU/req | CPU php-fpm | CPU wrk | CPU others |',
    '|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const s of summaries.filter((x) => x.mode === mode)) {
    rows.push(
      `| ${WORKLOAD_LABEL[s.workload]} | ${s.server} | ${s.runs} | ${fmtRate(s.requestsPerSec)} | ${fmtMs(s.p50Ms)} | ` +
        `${fmtMs(s.p99Ms)} | ${errorsCell(s)} | ${fmtPct(s.cpu.get('server'))} | ` +
        `${fmtCpuPerRequest(s.cpu.get('server'), s.requestsPerSec)} | ` +
        `${fmtPct(s.cpu.get('fpm'))} | ${fmtPct(s.cpu.get('wrk'))} | ${fmtPct(s.cpu.get('other'))} |`,
    );
  }
  return rows.join('\n');
}

function find(
  summaries: readonly Summary[],
  mode: ServerMode,
  server: ServerId,
  workload: Workload,
): Summary | null {
  return (
    summaries.find((s) => s.mode === mode && s.server === server && s.workload === workload) ?? null
  );
}

/**
 * Ratios sidecar / each other server for req/s (higher is better) and p99 (lower is better), for
 * one mode. node-ceiling has no PHP figure ("-").
 */
export function ratiosTable(summaries: readonly Summary[], mode: ServerMode): string {
  const rows = [
    '| ratio sidecar / other | vs nginx-default | vs nginx-keepalive | vs node-ceiling |',
    '|---|---:|---:|---:|',
  ];
  const others = ['nginx-default', 'nginx-keepalive', 'node-ceiling'] as const;
  for (const workload of WORKLOADS) {
    const sidecar = find(summaries, mode, 'sidecar', workload);
    const cells = (pick: (s: Summary) => number): string =>
      others
        .map((other) => {
          if (!serves(other, workload)) return '-';
          const o = find(summaries, mode, other, workload);
          return fmtRatio((sidecar === null ? NaN : pick(sidecar)) / (o === null ? NaN : pick(o)));
        })
        .join(' | ');
    rows.push(
      `| ${WORKLOAD_LABEL[workload]} req/s (higher is better) | ${cells((s) => s.requestsPerSec)} |`,
      `| ${WORKLOAD_LABEL[workload]} p99 (lower is better) | ${cells((s) => s.p99Ms)} |`,
    );
  }
  return rows.join('\n');
}

/**
 * The targets for one mode: PHP req/s >= nginx-default's and >= 0.9 x nginx-keepalive's;
 * PHP p99 <= nginx-default's; static req/s >= 0.5 x nginx's (the better of the two nginx runs,
 * which serve static files identically) and >= 0.85 x node-ceiling's.
 */
export function verdicts(summaries: readonly Summary[], mode: ServerMode): Verdict[] {
  const get = (server: ServerId, workload: Workload): Summary | null =>
    find(summaries, mode, server, workload);
  const rate = (s: Summary | null): number => s?.requestsPerSec ?? NaN;
  const p99 = (s: Summary | null): number => s?.p99Ms ?? NaN;
  const sidecarPhp = get('sidecar', 'php');
  const defaultPhp = get('nginx-default', 'php');
  const keepalivePhp = get('nginx-keepalive', 'php');
  const sidecarStatic = get('sidecar', 'static');
  const ceilingStatic = get('node-ceiling', 'static');
  // The better of the nginx runs that exist (Math.max with a NaN would be NaN).
  const nginxRates = [
    rate(get('nginx-default', 'static')),
    rate(get('nginx-keepalive', 'static')),
  ].filter(Number.isFinite);
  const nginxStatic = nginxRates.length === 0 ? NaN : Math.max(...nginxRates);
  const rateVerdict = (
    name: string,
    a: number,
    b: number,
    factor: number,
  ): Omit<Verdict, 'mode'> => ({
    name,
    measured: `${fmtRate(a)} vs ${fmtRate(b)} req/s (ratio ${fmtRatio(a / b)}, target >= ${factor})`,
    pass: a / b >= factor,
  });
  const list: Omit<Verdict, 'mode'>[] = [
    rateVerdict('PHP req/s >= nginx-default', rate(sidecarPhp), rate(defaultPhp), 1),
    rateVerdict('PHP req/s >= 0.9 x nginx-keepalive', rate(sidecarPhp), rate(keepalivePhp), 0.9),
    {
      name: 'PHP p99 <= nginx-default',
      measured: `${fmtMs(p99(sidecarPhp))} vs ${fmtMs(p99(defaultPhp))} (ratio ${fmtRatio(p99(sidecarPhp) / p99(defaultPhp))}, target <= 1)`,
      pass: p99(sidecarPhp) / p99(defaultPhp) <= 1,
    },
    rateVerdict(
      'static req/s >= 0.5 x nginx (better of the two)',
      rate(sidecarStatic),
      nginxStatic,
      0.5,
    ),
    rateVerdict(
      'static req/s >= 0.85 x node-ceiling',
      rate(sidecarStatic),
      rate(ceilingStatic),
      0.85,
    ),
  ];
  return list.map((v) => ({ mode, ...v }));
}

export function verdictTable(list: readonly Verdict[]): string {
  const rows = ['| mode | target | measured | result |', '|---|---|---|---|'];
  for (const v of list) {
    rows.push(`| ${v.mode} | ${v.name} | ${v.measured} | ${v.pass ? 'PASS' : 'FAIL'} |`);
  }
  return rows.join('\n');
}
