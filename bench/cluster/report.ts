/**
 * Turns bench:cluster's results into Markdown (printed at the end of `npm run bench:cluster`,
 * the source of docs/benchmarks.md's "bench:cluster" section): one row per setup, ratios to the
 * baseline (one sidecar without Redis), the latency per client process, and every rate step.
 * Pure formatting: no I/O. A setup that was not run shows as absent, never as a ratio of zero.
 */
import { int, ms, pct, table } from '../lib/markdown.ts';
import type { RateStep, SetupResult } from './measure.ts';
import type { SetupName } from './settings.ts';

const LABEL: Record<SetupName, string> = {
  baseline: '1 sidecar, no Redis (baseline)',
  split: '2 sidecars + Redis, streams split',
  'one-redis': '1 sidecar + Redis',
};

const ratio = (a: number, b: number): string =>
  b === 0 || !Number.isFinite(a / b) ? 'n/a' : `${(a / b).toFixed(2)}x`;

/** The highest passing step (the sustained rate), or undefined when none passed. */
function sustainedStep(r: SetupResult): RateStep | undefined {
  return r.steps
    .filter((s) => s.sustained)
    .sort((x, y) => x.rate - y.rate)
    .at(-1);
}

/** The highest rate every setup kept up with: where CPU per publish is compared. */
function commonRate(results: readonly SetupResult[]): number {
  const passed = results.map((r) => new Set(r.steps.filter((s) => s.sustained).map((s) => s.rate)));
  const all = [...(passed[0] ?? [])].filter((rate) => passed.every((p) => p.has(rate)));
  return Math.max(0, ...all);
}

/** CPU per publish above the idle use over a passing step at `rate`, ms; NaN without one. */
function costMs(r: SetupResult, rate: number, part: 'sidecars' | 'redis'): number {
  const step = r.steps.find((s) => s.sustained && s.rate === rate);
  if (step === undefined || step.accepted === 0 || r.idle.wallS === 0) return NaN;
  const idle = (r.idle[part] / r.idle.wallS) * step.cpu.wallS;
  return ((step.cpu[part] - idle) / step.accepted) * 1000;
}

function fmt(v: number, digits = 1): string {
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

function mainTable(results: readonly SetupResult[], rate: number): string {
  return table(
    [
      'setup',
      'streams open',
      'p50 ms',
      'p99 ms',
      'delivered',
      'streams with every event',
      'sustained publishes/s',
      'publish answer p50 / p99 ms',
      'answers > 1 s (all steps)',
      `sidecar CPU ms/publish at ${rate}/s`,
      'Redis CPU at sustained rate: µs/publish, % of a core',
      "others' CPU (cores)",
    ],
    results.map((r) => {
      const l = r.latency;
      const top = sustainedStep(r);
      const noRedis = r.setup === 'baseline';
      const slow = r.steps.reduce((n, s) => n + s.acks.overOneSecond, l.acks.overOneSecond);
      return [
        LABEL[r.setup],
        int(r.opened),
        ms(l.latency.p50),
        ms(l.latency.p99),
        `${pct(l.received, l.expected)} (${int(l.received)}/${int(l.expected)})`,
        `${int(l.streamsComplete)}/${int(r.opened)}`,
        int(r.sustained),
        `${ms(l.acks.p50)} / ${ms(l.acks.p99)}`,
        int(slow),
        fmt(costMs(r, rate, 'sidecars')),
        noRedis || top === undefined
          ? '-'
          : `${fmt(costMs(r, top.rate, 'redis') * 1000, 0)} µs, ${fmt((100 * top.cpu.redis) / top.cpu.wallS)} %`,
        r.othersCores.toFixed(2),
      ];
    }),
  );
}

function ratioTable(results: readonly SetupResult[], rate: number): string {
  const base = results.find((r) => r.setup === 'baseline');
  if (base === undefined) return '(no baseline run: no ratios)';
  return table(
    [
      'setup / baseline',
      'p50',
      'p99',
      'sustained publishes/s',
      `sidecar CPU per publish at ${rate}/s (all sidecars)`,
    ],
    results
      .filter((r) => r !== base)
      .map((r) => [
        LABEL[r.setup],
        ratio(r.latency.latency.p50, base.latency.latency.p50),
        ratio(r.latency.latency.p99, base.latency.latency.p99),
        ratio(r.sustained, base.sustained),
        ratio(costMs(r, rate, 'sidecars'), costMs(base, rate, 'sidecars')),
      ]),
  );
}

function perClientTable(results: readonly SetupResult[], clients: number): string {
  const rows: string[][] = [];
  for (const r of results) {
    r.latency.perClient.forEach((l, i) => {
      const node = r.sidecars <= clients ? String.fromCharCode(97 + (i % r.sidecars)) : 'all';
      rows.push([
        LABEL[r.setup],
        String(i + 1),
        node,
        int(l.count),
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max),
      ]);
    });
  }
  return table(
    ['setup', 'client process', 'sidecar', 'deliveries', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
    rows,
  );
}

function stepsTable(results: readonly SetupResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    for (const s of r.steps) {
      rows.push([
        LABEL[r.setup],
        int(s.rate),
        fmt(s.achieved),
        pct(s.received, s.expected),
        int(s.closedByPeer),
        ms(s.latency.p50),
        ms(s.latency.p99),
        ms(s.acks.p99),
        int(s.acks.overOneSecond),
        fmt(s.cpu.sidecars / s.cpu.wallS, 2),
        fmt(s.cpu.clients / s.cpu.wallS, 2),
        r.setup === 'baseline' ? '-' : fmt(s.cpu.redis / s.cpu.wallS, 3),
        s.sustained ? 'yes' : 'no',
      ]);
    }
  }
  return table(
    [
      'setup',
      'target/s',
      'accepted/s',
      'delivered',
      'streams dropped',
      'p50 ms',
      'p99 ms',
      'answer p99 ms',
      'answers > 1 s',
      'sidecars (cores)',
      'clients (cores)',
      'Redis (cores)',
      'kept up',
    ],
    rows,
  );
}

/** The whole Markdown report. */
export function renderReport(
  results: readonly SetupResult[],
  info: {
    clients: number;
    publisher: string;
    messages: number;
    messageRate: number;
    maxP99Ms: number;
  },
): string {
  const rate = commonRate(results);
  return [
    `#### One channel, ${int(results[0]?.subscribers ?? 0)} subscribers, publish via ${info.publisher}`,
    `Latency, completeness and publish answer times: the latency run, ${info.messages} events at ${info.messageRate}/s. p50/p99: the highest of the ${info.clients} client processes' (an upper bound of the combined figure). Sustained: highest rate step where every event reached every stream, 95 % of the rate was accepted and p99 <= ${info.maxP99Ms} ms. Sidecar CPU per publish: over the ${rate}/s step (the highest every setup kept up with), minus the idle use measured with the streams open. Redis: over the highest step the setup kept up with, µs per publish above its idle use, and % of a core idle included.`,
    mainTable(results, rate),
    '#### Ratios to the baseline (lower is better, except publishes/s)',
    ratioTable(results, rate),
    '#### Latency run per client process',
    perClientTable(results, info.clients),
    '<details><summary>every rate step (CPU in cores over the step)</summary>',
    stepsTable(results),
    '</details>',
  ].join('\n\n');
}
