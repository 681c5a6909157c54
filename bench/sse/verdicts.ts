/**
 * The SSE targets judged from bench:sse's results, per mode: completeness, p99 and
 * memory per stream against nchan at 10,000 subscribers, HTTP publish rate against nchan at 1,000
 * subscribers, datagram ingest with one subscriber. Also the median and ratio helpers the report
 * shares. Pure: no I/O.
 * Invariant: a target without the measurements it needs shows "n/a" and FAIL, never a pass.
 */
import type { ServerMode } from '../lib/modes.ts';
import { int, ms, pct, table } from '../lib/markdown.ts';
import { median } from '../lib/stats.ts';
import type { FanoutResult, LatencyRun } from './fanout.ts';
import type { SseResults } from './report.ts';

/** KiB with one decimal. */
export const kib = (bytes: number): string => (bytes / 1024).toFixed(1);
/** a / b as "1.23x"; 'n/a' when it is not a finite number. */
export const ratio = (a: number, b: number): string =>
  b === 0 || !Number.isFinite(a / b) ? 'n/a' : `${(a / b).toFixed(2)}x`;
/** The HTTP-publish latency run of a fan-out measurement. */
export const httpRun = (r: FanoutResult): LatencyRun | undefined =>
  r.runs.find((x) => x.publisher === 'http');
/** Median of `f` over `rs`, leaving out undefined values; NaN when none. */
export const med = <T>(rs: readonly T[], f: (r: T) => number | undefined): number =>
  median(rs.map(f).filter((v): v is number => v !== undefined));

/** One target of the issue, judged for one mode. */
export interface SseVerdict {
  mode: ServerMode;
  name: string;
  measured: string;
  pass: boolean;
}

/** The size a target is judged at: `want` when measured, else the largest measured (named). */
function judgedSize(sizes: readonly number[], want: number): number | null {
  if (sizes.includes(want)) return want;
  return sizes.length === 0 ? null : Math.max(...sizes);
}
/** "N subscribers", naming the target's size when another was measured. */
const atSize = (size: number | null, want: number): string =>
  size === null
    ? `${int(want)} subscribers (not measured)`
    : size === want
      ? `${int(want)} subscribers`
      : `${int(size)} subscribers (the target is at ${int(want)})`;

/**
 * The SSE targets for one mode: at 10,000 subscribers every event reaches every stream,
 * the sidecar's p99 (HTTP publish) and RSS per stream are no worse than nchan's (medians over the
 * rounds); HTTP publishes sustained at 1,000 subscribers at least nchan's; datagram ingest at
 * least 100,000 publishes/s with one subscriber. Fewer subscribers measured: judged at the
 * largest, and said so.
 */
export function sseVerdicts(results: SseResults, mode: ServerMode): SseVerdict[] {
  const fan = results.fanout.filter((r) => r.mode === mode);
  const size = judgedSize([...new Set(fan.map((r) => r.subscribers))], 10_000);
  const at = (target: string): FanoutResult[] =>
    fan.filter((r) => r.target === target && r.subscribers === size);
  const sidecar = at('askr-sidecar');
  const nchan = at('nchan');
  const runs = sidecar.flatMap((r) => r.runs);
  const expected = runs.reduce((n, r) => n + r.expected, 0);
  const received = runs.reduce((n, r) => n + r.received, 0);
  const allOpened = sidecar.every((r) => r.opened === r.subscribers);
  const sP99 = med(sidecar, (r) => httpRun(r)?.latency.p99);
  const nP99 = med(nchan, (r) => httpRun(r)?.latency.p99);
  const sRss = med(sidecar, (r) => r.rssPerConn);
  const nRss = med(nchan, (r) => r.rssPerConn);
  const rate = results.rate.filter((r) => r.mode === mode);
  const rateSize = judgedSize(
    [...new Set(rate.map((r) => r.subscribers).filter((n) => n > 1))],
    1_000,
  );
  const sustained = (target: string, publisher: string, subscribers: number | null): number =>
    med(
      rate.filter(
        (r) => r.target === target && r.publisher === publisher && r.subscribers === subscribers,
      ),
      (r) => r.sustained,
    );
  const sHttp = sustained('askr-sidecar', 'http', rateSize);
  const nHttp = sustained('nchan', 'http', rateSize);
  const dgram = sustained('askr-sidecar', 'datagram', 1);
  const num = (v: number, f: (x: number) => string): string => (Number.isFinite(v) ? f(v) : 'n/a');
  return [
    {
      name: `100 % delivered at ${atSize(size, 10_000)}, sidecar, every run and publisher`,
      measured:
        runs.length === 0
          ? 'n/a'
          : `${pct(received, expected)} (${int(received)}/${int(expected)} in ${runs.length} runs)${allOpened ? '' : '; some streams did not open'}`,
      pass: runs.length > 0 && expected > 0 && received === expected && allOpened,
    },
    {
      name: `p99 <= nchan's at ${atSize(size, 10_000)}, HTTP publish, medians`,
      measured: `${num(sP99, ms)} vs ${num(nP99, ms)} ms (${ratio(sP99, nP99)})`,
      pass: sP99 <= nP99,
    },
    {
      name: `memory per stream <= nchan's at ${atSize(size, 10_000)}, RSS, medians`,
      measured: `${num(sRss, kib)} vs ${num(nRss, kib)} KiB (${ratio(sRss, nRss)})`,
      pass: sRss <= nRss,
    },
    {
      name: `HTTP publishes/s >= nchan's at ${atSize(rateSize, 1_000)}, medians`,
      measured: `${num(sHttp, int)} vs ${num(nHttp, int)}/s (${ratio(sHttp, nHttp)})`,
      pass: sHttp >= nHttp,
    },
    {
      name: 'datagram publishes/s with 1 subscriber >= 100,000 (median)',
      measured: `${num(dgram, int)}/s`,
      pass: dgram >= 100_000,
    },
  ].map((v) => ({ mode, ...v }));
}

/** The verdicts of every mode run, as a Markdown section. */
export function verdictTable(results: SseResults): string {
  const list = results.modes.flatMap((mode) => sseVerdicts(results, mode));
  return `#### Targets\n\n${table(
    ['mode', 'target', 'measured (sidecar vs nchan)', 'result'],
    list.map((v) => [v.mode, v.name, v.measured, v.pass ? 'PASS' : 'FAIL']),
  )}`;
}
