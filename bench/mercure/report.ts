/**
 * Turns bench:mercure's measurements into Markdown (printed at the end of `npm run bench:mercure`,
 * the source of docs/benchmarks.md's "bench:mercure" section): per size, the medians over the
 * rounds of every target, the ratios of the pairs the bench exists for, and every round's row.
 * Pure formatting: no I/O. A target that was not run is absent, never a ratio of zero.
 */
import { median } from '../lib/stats.ts';
import { int, ms, pct, table } from '../lib/markdown.ts';
import type { LatencySummary } from '../sse/histogram.ts';
import type { Doors, Measurement, Phase } from './measure.ts';
import type { TargetName } from './settings.ts';

const LABEL: Record<TargetName, string> = {
  mixed: 'sidecar, both doors (half the streams each)',
  askr: 'sidecar askr door',
  mercure: 'sidecar Mercure `match=`',
  'mercure-urlpattern': 'sidecar Mercure `match_urlpattern=`',
  'mercure-0x': 'sidecar Mercure 0.x `topic=` (compatibility)',
  'node-mercure': 'node-mercure 0.1.0 `topic=`',
  'askr-lean': 'sidecar askr door, lean',
  'mercure-lean': 'sidecar Mercure `match=`, lean',
};

/** numerator / denominator: the comparisons the bench exists for. */
const PAIRS: readonly (readonly [TargetName, TargetName])[] = [
  ['mercure', 'askr'],
  ['mercure-urlpattern', 'askr'],
  ['mercure-lean', 'askr-lean'],
  ['mercure', 'mercure-lean'],
  ['mercure-0x', 'node-mercure'],
  ['mercure', 'node-mercure'],
];

const fmt = (v: number, digits = 1): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const kib = (bytes: number): string => fmt(bytes / 1024);
const ratio = (a: number, b: number): string =>
  b === 0 || !Number.isFinite(a / b) ? 'n/a' : `${(a / b).toFixed(2)}x`;

/** The medians of one target at one size. */
interface Summary {
  target: TargetName;
  rounds: number;
  opened: number;
  rssPerStream: number;
  p50: number;
  p99: number;
  /** Summed over the rounds. */
  received: number;
  expected: number;
  seq: PhaseSummary;
  conc: PhaseSummary;
  othersCores: number;
}

interface PhaseSummary {
  answeredPerS: number;
  deliveredPerS: number;
  received: number;
  expected: number;
  dropped: number;
  serverMsPerPublish: number;
  server: number;
  bench: number;
  idle: number;
  p99: number;
}

function phaseSummary(phases: readonly (Phase | undefined)[]): PhaseSummary {
  const ok = phases.filter((p): p is Phase => p !== undefined);
  const m = (f: (p: Phase) => number): number => median(ok.map(f));
  const sum = (f: (p: Phase) => number): number => ok.reduce((n, p) => n + f(p), 0);
  return {
    answeredPerS: m((p) => p.answeredPerS),
    deliveredPerS: m((p) => p.deliveredPerS),
    received: sum((p) => p.received),
    expected: sum((p) => p.expected),
    dropped: sum((p) => p.dropped),
    serverMsPerPublish: m((p) => p.serverMsPerPublish),
    server: m((p) => p.cpu.server),
    bench: m((p) => p.cpu.bench),
    idle: m((p) => p.cpu.idle),
    p99: m((p) => p.latency.p99),
  };
}

function summarize(target: TargetName, runs: readonly Measurement[]): Summary {
  const m = (f: (r: Measurement) => number): number => median(runs.map(f));
  return {
    target,
    rounds: runs.length,
    opened: m((r) => r.opened),
    rssPerStream: m((r) => r.rssPerStreamBytes),
    p50: m((r) => r.latency.latency.p50),
    p99: m((r) => r.latency.latency.p99),
    received: runs.reduce((n, r) => n + r.latency.received, 0),
    expected: runs.reduce((n, r) => n + r.latency.expected, 0),
    seq: phaseSummary(runs.map((r) => r.phases[0])),
    conc: phaseSummary(runs.map((r) => r.phases[1])),
    othersCores: m((r) => r.othersCores),
  };
}

function complete(p: { received: number; expected: number; dropped: number }): string {
  const dropped = p.dropped > 0 ? `, ${int(p.dropped)} streams dropped` : '';
  return `${pct(p.received, p.expected)}${dropped}`;
}

function mainTable(summaries: readonly Summary[], concurrency: number): string {
  return table(
    [
      'target',
      'streams open',
      'RSS / stream KiB',
      'latency p50 / p99 ms',
      'delivered',
      'publishes/s x1: answered / delivered',
      'x1 delivered',
      `publishes/s x${concurrency}: answered / delivered`,
      `x${concurrency} delivered`,
      `x${concurrency} p99 ms`,
      `server CPU ms / publish (x${concurrency})`,
      `CPU % server / bench+clients / machine idle (x${concurrency})`,
      "others' cores",
    ],
    summaries.map((s) => [
      LABEL[s.target],
      int(s.opened),
      kib(s.rssPerStream),
      `${ms(s.p50)} / ${ms(s.p99)}`,
      pct(s.received, s.expected),
      `${fmt(s.seq.answeredPerS)} / ${fmt(s.seq.deliveredPerS)}`,
      complete(s.seq),
      `${fmt(s.conc.answeredPerS)} / ${fmt(s.conc.deliveredPerS)}`,
      complete(s.conc),
      ms(s.conc.p99),
      fmt(s.conc.serverMsPerPublish, 2),
      `${fmt(s.conc.server, 0)} / ${fmt(s.conc.bench, 0)} / ${fmt(s.conc.idle, 0)}`,
      fmt(s.othersCores, 2),
    ]),
  );
}

function ratioTable(summaries: readonly Summary[], concurrency: number): string {
  const by = new Map(summaries.map((s) => [s.target, s]));
  const rows: string[][] = [];
  for (const [a, b] of PAIRS) {
    const x = by.get(a);
    const y = by.get(b);
    if (x === undefined || y === undefined) continue;
    rows.push([
      `${LABEL[a]} / ${LABEL[b]}`,
      ratio(x.rssPerStream, y.rssPerStream),
      ratio(x.p50, y.p50),
      ratio(x.p99, y.p99),
      ratio(x.seq.answeredPerS, y.seq.answeredPerS),
      ratio(x.conc.answeredPerS, y.conc.answeredPerS),
      ratio(x.conc.deliveredPerS, y.conc.deliveredPerS),
      ratio(x.conc.serverMsPerPublish, y.conc.serverMsPerPublish),
    ]);
  }
  if (rows.length === 0) return '(no pair of targets measured: no ratios)';
  return table(
    [
      'ratio',
      'RSS / stream',
      'p50',
      'p99',
      'publishes/s x1',
      `publishes/s x${concurrency}`,
      `delivered/s x${concurrency}`,
      `server CPU / publish x${concurrency}`,
    ],
    rows,
  );
}

/**
 * `mixed`: the askr and the Mercure streams of one sidecar, the same events; medians over the
 * rounds of each door's latency, and their ratio per round (then its median).
 */
function doorsTable(runs: readonly Measurement[], concurrency: number): string | null {
  const mixed = runs.filter((r) => r.target === 'mixed');
  if (mixed.length === 0) return null;
  const rows: string[][] = [];
  const row = (label: string, doors: readonly (Doors | undefined)[]): void => {
    const d = doors.filter((x): x is Doors => x !== undefined);
    const m = (f: (x: Doors) => number): number => median(d.map(f));
    const q = (door: (x: Doors) => LatencySummary, p: 'p50' | 'p99'): number =>
      m((x) => door(x)[p]);
    // The median of the per-round ratios: each round's two doors saw the same events.
    const r = (p: 'p50' | 'p99'): string =>
      `${fmt(
        m((x) => x.mercure[p] / x.askr[p]),
        2,
      )}x`;
    rows.push([
      label,
      `${ms(q((x) => x.askr, 'p50'))} / ${ms(q((x) => x.askr, 'p99'))}`,
      `${ms(q((x) => x.mercure, 'p50'))} / ${ms(q((x) => x.mercure, 'p99'))}`,
      r('p50'),
      r('p99'),
    ]);
  };
  row(
    'latency run',
    mixed.map((x) => x.latency.doors),
  );
  row(
    'closed loop x1',
    mixed.map((x) => x.phases[0]?.doors),
  );
  row(
    `closed loop x${concurrency}`,
    mixed.map((x) => x.phases[1]?.doors),
  );
  return table(
    [
      'phase',
      'askr streams p50 / p99 ms',
      'Mercure streams p50 / p99 ms',
      'Mercure / askr p50',
      'Mercure / askr p99',
    ],
    rows,
  );
}

function roundsTable(runs: readonly Measurement[]): string {
  return table(
    [
      'round',
      'target',
      'open',
      'open ms',
      'RSS before MiB',
      'RSS / stream KiB',
      'p50 / p99 ms',
      'delivered',
      'x1 answered/s, delivered',
      'xC answered/s, delivered',
      'xC server / bench / idle %',
      "others' cores",
    ],
    runs.map((r) => {
      const [seq, conc] = r.phases;
      const phase = (p: Phase | undefined): string =>
        p === undefined
          ? '-'
          : `${fmt(p.answeredPerS)}, ${complete(p)}${p.failed > 0 ? `, ${int(p.failed)} failed` : ''}`;
      return [
        String(r.round + 1),
        LABEL[r.target],
        `${int(r.opened)}${r.openFailed > 0 ? ` (${int(r.openFailed)} failed)` : ''}`,
        int(r.openMs),
        fmt(r.rssBeforeBytes / 1024 / 1024),
        kib(r.rssPerStreamBytes),
        `${ms(r.latency.latency.p50)} / ${ms(r.latency.latency.p99)}`,
        pct(r.latency.received, r.latency.expected),
        phase(seq),
        phase(conc),
        conc === undefined
          ? '-'
          : `${fmt(conc.cpu.server, 0)} / ${fmt(conc.cpu.bench, 0)} / ${fmt(conc.cpu.idle, 0)}`,
        fmt(r.othersCores, 2),
      ];
    }),
  );
}

/** The whole Markdown report. */
export function renderReport(
  results: readonly Measurement[],
  info: { concurrency: number; rounds: number; clients: number; header: string },
): string {
  const out: string[] = [info.header];
  const sizes = [...new Set(results.map((r) => r.subscribers))];
  for (const size of sizes) {
    const atSize = results.filter((r) => r.subscribers === size);
    const targets = [...new Set(atSize.map((r) => r.target))];
    const summaries = targets.map((t) =>
      summarize(
        t,
        atSize.filter((r) => r.target === t),
      ),
    );
    out.push(
      `#### ${int(size)} subscribers on one topic (medians of ${info.rounds} round${info.rounds === 1 ? '' : 's'})`,
      mainTable(summaries, info.concurrency),
    );
    const doors = doorsTable(atSize, info.concurrency);
    if (doors !== null) {
      out.push(
        `#### Both doors on one sidecar at ${int(size)} subscribers: the same events, half the streams each`,
        doors,
      );
    }
    out.push(
      `#### Ratios at ${int(size)} subscribers (RSS, latency, CPU: lower is better; publishes/s: higher is better)`,
      ratioTable(summaries, info.concurrency),
      `<details><summary>every round at ${int(size)} subscribers (xC: ${info.concurrency} in flight)</summary>`,
      roundsTable(atSize),
      '</details>',
    );
  }
  return out.join('\n\n');
}
