/**
 * bench:protect figures: per server and phase, the busy workers of its pool (from the FPM status
 * samples) and the probe's latency and failures; then the markdown tables and the ratios
 * sidecar / nginx. Pure functions of the recorded samples.
 * Invariants: latency percentiles cover every probe request, failed ones at the time they failed
 * (a timeout at the client timeout), so errors never make the tail look better; a failed status
 * sample is counted, never read as 0 busy.
 */
import type { StatusSample } from './fpm-status.ts';
import type { ProbeResult } from './probe.ts';
import type { Phase, ServerName } from './settings.ts';
import type { SlowClientStats } from './slow-clients.ts';

/** Everything recorded for one server in one phase. */
export interface PhaseRun {
  phase: Phase;
  server: ServerName;
  durationMs: number;
  samples: StatusSample[];
  probes: ProbeResult[];
  slowClients: SlowClientStats | null;
  /** After the slow clients left: ms until the pool had no busy worker; null: not within the wait. */
  drainMs: number | null;
}

export interface PhaseSummary {
  phase: Phase;
  server: ServerName;
  samples: number;
  sampleErrors: number;
  busyMedian: number;
  busyMax: number;
  /** Share of each non-idle state over all busy worker-samples ("Reading headers": 0.9, ...). */
  busyStates: Record<string, number>;
  /** Busy workers per second of the phase (the most seen in that second's samples). */
  busyPerSecond: (number | null)[];
  /** "max children reached" at the end of the phase (FPM's counter since the pool started). */
  maxChildrenReached: number;
  probes: number;
  ok: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Complete answers with a status other than 200. */
  non200: number;
  timeouts: number;
  /** Other failures (reset, refused), by code. */
  otherErrors: number;
  drainMs: number | null;
  slowClients: SlowClientStats | null;
}

export const PHASE_LABEL: Record<Phase, string> = {
  'slow-readers': '1. slow readers',
  'slow-uploaders': '2. slow uploaders',
  baseline: '3. baseline',
};

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? NaN;
}

export function summarizeRun(run: PhaseRun): PhaseSummary {
  const ok = run.samples.flatMap((s) => (s.status === null ? [] : [s.status]));
  const busy = ok.map((s) => s.busy);
  // Up to the last sample: the phase's end rarely falls on a whole second.
  const seconds = Math.ceil(((run.samples.at(-1)?.tMs ?? 0) + 1) / 1000);
  const busyPerSecond: (number | null)[] = [];
  for (let i = 0; i < seconds; i++) {
    const inSecond = run.samples.filter((s) => s.tMs >= i * 1000 && s.tMs < (i + 1) * 1000);
    const values = inSecond.flatMap((s) => (s.status === null ? [] : [s.status.busy]));
    busyPerSecond.push(values.length === 0 ? null : Math.max(...values));
  }
  const stateTotals: Record<string, number> = {};
  let busySamples = 0;
  for (const s of ok) {
    for (const [state, n] of Object.entries(s.states)) {
      if (state === 'Idle') continue;
      stateTotals[state] = (stateTotals[state] ?? 0) + n;
      busySamples += n;
    }
  }
  const busyStates = Object.fromEntries(
    Object.entries(stateTotals).map(([state, n]) => [state, n / busySamples]),
  );
  const latencies = run.probes.map((p) => p.latencyMs);
  const failed = run.probes.filter((p) => p.error !== undefined);
  return {
    phase: run.phase,
    server: run.server,
    samples: run.samples.length,
    sampleErrors: run.samples.length - ok.length,
    busyMedian: percentile(busy, 50),
    busyMax: busy.length === 0 ? NaN : Math.max(...busy),
    busyStates,
    busyPerSecond,
    maxChildrenReached: ok.at(-1)?.maxChildrenReached ?? NaN,
    probes: run.probes.length,
    ok: run.probes.filter((p) => p.error === undefined && p.status === 200).length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.length === 0 ? NaN : Math.max(...latencies),
    non200: run.probes.filter((p) => p.error === undefined && p.status !== 200).length,
    timeouts: failed.filter((p) => p.error === 'timeout').length,
    otherErrors: failed.filter((p) => p.error !== 'timeout').length,
    drainMs: run.drainMs,
    slowClients: run.slowClients,
  };
}

const fmtMs = (n: number): string =>
  !Number.isFinite(n)
    ? 'n/a'
    : n >= 1000
      ? `${(n / 1000).toFixed(2)} s`
      : n >= 100
        ? `${Math.round(n)} ms`
        : `${n.toFixed(1)} ms`;
const fmtNum = (n: number): string => (Number.isFinite(n) ? String(n) : 'n/a');

/** One character per second: the most busy workers seen in it ('?': no sample answered). */
export function seriesCell(perSecond: readonly (number | null)[]): string {
  return perSecond.map((n) => (n === null ? '?' : n > 9 ? '+' : String(n))).join('');
}

function statesCell(states: Record<string, number>): string {
  const entries = Object.entries(states).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return '-';
  return entries.map(([state, share]) => `${state} ${Math.round(share * 100)}%`).join(', ');
}

function slowCell(s: SlowClientStats | null): string {
  if (s === null) return '-';
  const parts = [`${s.connections} conn`];
  if (s.kind === 'slow-readers') parts.push(`${s.withData ?? 0} got data`);
  else parts.push(`${s.bytesSent ?? 0} B sent`);
  if (s.closedByServer > 0) parts.push(`${s.closedByServer} closed by server`);
  const statuses = Object.entries(s.statuses).map(([k, v]) => `${v}x ${k}`);
  return [...parts, ...statuses].join(', ');
}

/** The main table: one row per phase and server, in the order run. */
export function resultsTable(summaries: readonly PhaseSummary[]): string {
  const rows = [
    '| phase | server | busy median | busy max | busy workers, 1 char/s | busy as | max children reached | probes | probe p50 | probe p99 | probe max | non-200 | timeouts | other errors | idle after | slow clients |',
    '|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const s of summaries) {
    const sampleNote = s.sampleErrors > 0 ? ` (${s.sampleErrors} samples failed)` : '';
    rows.push(
      `| ${PHASE_LABEL[s.phase]} | ${s.server} | ${fmtNum(s.busyMedian)} | ${fmtNum(s.busyMax)}${sampleNote} | ` +
        `\`${seriesCell(s.busyPerSecond)}\` | ${statesCell(s.busyStates)} | ${fmtNum(s.maxChildrenReached)} | ${s.probes} | ` +
        `${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${fmtMs(s.maxMs)} | ${s.non200} | ${s.timeouts} | ` +
        `${s.otherErrors} | ${s.drainMs === null ? 'not idle' : fmtMs(s.drainMs)} | ${slowCell(s.slowClients)} |`,
    );
  }
  return rows.join('\n');
}

/** a / b, with the cases a ratio cannot say spelled out. */
function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return 'n/a';
  if (b === 0) return a === 0 ? '= (both 0)' : `∞ (${a} vs 0)`;
  const r = a / b;
  return r >= 100 ? String(Math.round(r)) : r.toFixed(2);
}

/** Ratios sidecar / nginx per phase (lower is better for every column). */
export function ratiosTable(summaries: readonly PhaseSummary[]): string {
  const rows = [
    '| phase | busy median | busy max | probe p50 | probe p99 | probe max | failed probes (sidecar vs nginx) |',
    '|---|---:|---:|---:|---:|---:|---|',
  ];
  const phases = [...new Set(summaries.map((s) => s.phase))];
  for (const phase of phases) {
    const side = summaries.find((s) => s.phase === phase && s.server === 'sidecar');
    const ngx = summaries.find((s) => s.phase === phase && s.server === 'nginx');
    if (side === undefined || ngx === undefined) continue;
    const failed = (s: PhaseSummary): number => s.non200 + s.timeouts + s.otherErrors;
    rows.push(
      `| ${PHASE_LABEL[phase]} | ${ratio(side.busyMedian, ngx.busyMedian)} | ${ratio(side.busyMax, ngx.busyMax)} | ` +
        `${ratio(side.p50Ms, ngx.p50Ms)} | ${ratio(side.p99Ms, ngx.p99Ms)} | ${ratio(side.maxMs, ngx.maxMs)} | ` +
        `${failed(side)} of ${side.probes} vs ${failed(ngx)} of ${ngx.probes} |`,
    );
  }
  return rows.join('\n');
}
