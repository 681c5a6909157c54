/**
 * Turns proxy-benchmark measurements into markdown: per-run rows, the medians, the ratios
 * sidecar/nginx and the pass/fail verdict against the targets. Pure (data in, text out).
 * Invariant: a missing measurement shows as "n/a" and its target as not met, never as a pass.
 */
import { median } from './stats.ts';
import type { WrkResult } from './wrk.ts';

export const SERVERS = ['sidecar', 'nginx-default', 'nginx-keepalive'] as const;
export type ServerId = (typeof SERVERS)[number];
export const WORKLOADS = ['php', 'static'] as const;
export type Workload = (typeof WORKLOADS)[number];

export interface Measurement {
  server: ServerId;
  workload: Workload;
  round: number;
  wrk: WrkResult;
  /** % of one core: 'server', 'fpm', 'wrk', 'other', 'machine'. */
  cpu: ReadonlyMap<string, number>;
}

export interface Summary {
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
  name: string;
  measured: string;
  pass: boolean;
}

const WORKLOAD_LABEL: Record<Workload, string> = {
  php: 'PHP hello world',
  static: 'static 16 KiB',
};

/** Medians per (server, workload) over all rounds. */
export function summarize(measurements: readonly Measurement[]): Summary[] {
  const out: Summary[] = [];
  for (const workload of WORKLOADS) {
    for (const server of SERVERS) {
      const runs = measurements.filter((m) => m.server === server && m.workload === workload);
      if (runs.length === 0) continue;
      const cpu = new Map<string, number>();
      for (const label of runs[0]?.cpu.keys() ?? []) {
        cpu.set(label, median(runs.map((r) => r.cpu.get(label) ?? 0)));
      }
      out.push({
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

function errorsCell(s: { non2xx: number; socketErrors: number; timeouts: number }): string {
  const parts: string[] = [];
  if (s.non2xx > 0) parts.push(`${s.non2xx} non-2xx`);
  if (s.socketErrors > 0) parts.push(`${s.socketErrors} socket`);
  if (s.timeouts > 0) parts.push(`${s.timeouts} timeouts`);
  return parts.length === 0 ? '0' : parts.join(', ');
}

/** One row per run, in the order measured. */
export function runsTable(measurements: readonly Measurement[]): string {
  const rows = [
    '| round | workload | server | req/s | p50 | p99 | max | errors | CPU server | server CPU/req | CPU php-fpm | CPU wrk | CPU other |',
    '|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const m of measurements) {
    rows.push(
      `| ${m.round} | ${WORKLOAD_LABEL[m.workload]} | ${m.server} | ${fmtRate(m.wrk.requestsPerSec)} | ` +
        `${fmtMs(m.wrk.p50Ms)} | ${fmtMs(m.wrk.p99Ms)} | ${fmtMs(m.wrk.maxMs)} | ${errorsCell(m.wrk)} | ` +
        `${fmtPct(m.cpu.get('server'))} | ${fmtCpuPerRequest(m.cpu.get('server'), m.wrk.requestsPerSec)} | ` +
        `${fmtPct(m.cpu.get('fpm'))} | ${fmtPct(m.cpu.get('wrk'))} | ${fmtPct(m.cpu.get('other'))} |`,
    );
  }
  return rows.join('\n');
}

/** Medians per server and workload. */
export function summaryTable(summaries: readonly Summary[]): string {
  const rows = [
    '| workload | server | req/s | p50 | p99 | errors | CPU server | server CPU/req | CPU php-fpm | CPU wrk |',
    '|---|---|---:|---:|---:|---|---:|---:|---:|---:|',
  ];
  for (const s of summaries) {
    rows.push(
      `| ${WORKLOAD_LABEL[s.workload]} | ${s.server} | ${fmtRate(s.requestsPerSec)} | ${fmtMs(s.p50Ms)} | ` +
        `${fmtMs(s.p99Ms)} | ${errorsCell(s)} | ${fmtPct(s.cpu.get('server'))} | ` +
        `${fmtCpuPerRequest(s.cpu.get('server'), s.requestsPerSec)} | ` +
        `${fmtPct(s.cpu.get('fpm'))} | ${fmtPct(s.cpu.get('wrk'))} |`,
    );
  }
  return rows.join('\n');
}

function find(summaries: readonly Summary[], server: ServerId, workload: Workload): Summary | null {
  return summaries.find((s) => s.server === server && s.workload === workload) ?? null;
}

/** Ratios sidecar / each nginx for req/s (higher is better) and p99 (lower is better). */
export function ratiosTable(summaries: readonly Summary[]): string {
  const rows = [
    '| ratio sidecar / nginx | vs nginx-default | vs nginx-keepalive |',
    '|---|---:|---:|',
  ];
  for (const workload of WORKLOADS) {
    const sidecar = find(summaries, 'sidecar', workload);
    const d = find(summaries, 'nginx-default', workload);
    const k = find(summaries, 'nginx-keepalive', workload);
    const r = (a: number | undefined, b: number | undefined): string =>
      fmtRatio((a ?? NaN) / (b ?? NaN));
    rows.push(
      `| ${WORKLOAD_LABEL[workload]} req/s (higher is better) | ${r(sidecar?.requestsPerSec, d?.requestsPerSec)} | ${r(sidecar?.requestsPerSec, k?.requestsPerSec)} |`,
      `| ${WORKLOAD_LABEL[workload]} p99 (lower is better) | ${r(sidecar?.p99Ms, d?.p99Ms)} | ${r(sidecar?.p99Ms, k?.p99Ms)} |`,
    );
  }
  return rows.join('\n');
}

/**
 * The targets: PHP req/s >= nginx-keepalive's; PHP p99 <= nginx-default's; static req/s
 * >= half of nginx's (the better of the two nginx runs, which serve static files identically).
 */
export function verdicts(summaries: readonly Summary[]): Verdict[] {
  const get = (server: ServerId, workload: Workload): Summary | null =>
    find(summaries, server, workload);
  const sidecarPhp = get('sidecar', 'php');
  const keepalivePhp = get('nginx-keepalive', 'php');
  const defaultPhp = get('nginx-default', 'php');
  const sidecarStatic = get('sidecar', 'static');
  const nginxStatic = Math.max(
    get('nginx-default', 'static')?.requestsPerSec ?? NaN,
    get('nginx-keepalive', 'static')?.requestsPerSec ?? NaN,
  );
  const phpRate = (sidecarPhp?.requestsPerSec ?? NaN) / (keepalivePhp?.requestsPerSec ?? NaN);
  const phpP99 = (sidecarPhp?.p99Ms ?? NaN) / (defaultPhp?.p99Ms ?? NaN);
  const staticRate = (sidecarStatic?.requestsPerSec ?? NaN) / nginxStatic;
  return [
    {
      name: 'PHP req/s >= nginx-keepalive',
      measured: `${fmtRate(sidecarPhp?.requestsPerSec ?? NaN)} vs ${fmtRate(keepalivePhp?.requestsPerSec ?? NaN)} (ratio ${fmtRatio(phpRate)})`,
      pass: phpRate >= 1,
    },
    {
      name: 'PHP p99 <= nginx-default',
      measured: `${fmtMs(sidecarPhp?.p99Ms ?? NaN)} vs ${fmtMs(defaultPhp?.p99Ms ?? NaN)} (ratio ${fmtRatio(phpP99)})`,
      pass: phpP99 <= 1,
    },
    {
      name: 'static req/s >= 0.5 x nginx',
      measured: `${fmtRate(sidecarStatic?.requestsPerSec ?? NaN)} vs ${fmtRate(nginxStatic)} (ratio ${fmtRatio(staticRate)})`,
      pass: staticRate >= 0.5,
    },
  ];
}

export function verdictTable(list: readonly Verdict[]): string {
  const rows = ['| target | measured | result |', '|---|---|---|'];
  for (const v of list) rows.push(`| ${v.name} | ${v.measured} | ${v.pass ? 'PASS' : 'FAIL'} |`);
  return rows.join('\n');
}
