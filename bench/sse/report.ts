/**
 * Turns the SSE benchmark's results into Markdown tables (printed at the end of `npm run
 * bench:sse`, the source of docs/benchmarks.md's "SSE (bench:sse)" section): every run with the
 * machine's idle share before it, sidecar/nchan ratios of medians per mode, and the verdicts of
 * verdicts.ts. Pure formatting: no I/O.
 */
import type { QuietReading } from '../lib/cpu.ts';
import type { ServerMode } from '../lib/modes.ts';
import { int, ms, pct, table } from '../lib/markdown.ts';
import type { FanoutResult } from './fanout.ts';
import type { RateResult } from './rate.ts';
import type { RampResult } from './fpm-workers.ts';
import type { ProbeResult } from './servers.ts';
import { httpRun, kib, med, ratio, verdictTable } from './verdicts.ts';

const ZERO_PROBE: ProbeResult = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };

export interface SseResults {
  /** The modes run (BENCH_MODES), in the order the report lists them. */
  modes: ServerMode[];
  fanout: FanoutResult[];
  rate: RateResult[];
  ramp: RampResult[];
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
/** The machine before a measurement: idle share and others' cores, flagged when not quiet. */
const idleCell = (q: QuietReading): string =>
  `${Math.round(q.idlePct)} % / ${q.othersCores.toFixed(2)}${q.quiet ? '' : ' (not quiet)'}`;
const IDLE_HEAD = 'idle before / others (cores)';

function fanoutTables(results: readonly FanoutResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    for (const run of r.runs) {
      rows.push([
        r.mode,
        String(r.round),
        r.target,
        int(r.subscribers),
        run.publisher,
        int(r.opened),
        ms(run.latency.p50),
        ms(run.latency.p99),
        ms(run.latency.max),
        `${pct(run.received, run.expected)} (${int(run.received)}/${int(run.expected)})`,
        int(run.minReach),
        idleCell(r.quiet),
        r.othersCores.toFixed(2),
      ]);
    }
  }
  const latency = table(
    [
      'mode',
      'round',
      'server',
      'subscribers',
      'publish via',
      'streams open',
      'p50 ms',
      'p99 ms',
      'max ms',
      'delivered',
      'min reach of a message',
      IDLE_HEAD,
      "others' CPU during (cores)",
    ],
    rows,
  );
  const memory = table(
    [
      'mode',
      'round',
      'server',
      'subscribers',
      'RSS before MiB',
      'RSS after MiB',
      'RSS per stream KiB',
      'PSS per stream KiB',
      'open time ms',
    ],
    results.map((r) => [
      r.mode,
      String(r.round),
      r.target,
      int(r.subscribers),
      mib(r.memBefore.rssBytes),
      mib(r.memAfter.rssBytes),
      kib(r.rssPerConn),
      kib(r.pssPerConn),
      int(r.openMs),
    ]),
  );
  // With BENCH_REPEAT > 1 each size was measured several times (rotating the order): ratios
  // compare the medians, per mode.
  const ratios: string[][] = [];
  const sizes = [...new Set(results.map((r) => r.subscribers))];
  const modes = [...new Set(results.map((r) => r.mode))];
  for (const mode of modes) {
    for (const size of sizes) {
      const of = (target: string): FanoutResult[] =>
        results.filter((r) => r.mode === mode && r.target === target && r.subscribers === size);
      const s = of('askr-sidecar');
      const n = of('nchan');
      if (s.length === 0 || n.length === 0) continue;
      ratios.push([
        mode,
        int(size),
        String(Math.min(s.length, n.length)),
        ratio(
          med(s, (r) => httpRun(r)?.latency.p50),
          med(n, (r) => httpRun(r)?.latency.p50),
        ),
        ratio(
          med(s, (r) => httpRun(r)?.latency.p99),
          med(n, (r) => httpRun(r)?.latency.p99),
        ),
        ratio(
          med(s, (r) => r.rssPerConn),
          med(n, (r) => r.rssPerConn),
        ),
        ratio(
          med(s, (r) => r.pssPerConn),
          med(n, (r) => r.pssPerConn),
        ),
      ]);
    }
  }
  const ratioTable = table(
    [
      'mode',
      'subscribers',
      'runs',
      'p50 sidecar/nchan',
      'p99 sidecar/nchan',
      'RSS/stream sidecar/nchan',
      'PSS/stream sidecar/nchan',
    ],
    ratios,
  );
  const probed = results.filter((r) => r.probe !== undefined);
  const probeTable =
    probed.length === 0
      ? ''
      : '\n\nSidecar after a full GC (BENCH_MEMORY_PROBE=1, process.memoryUsage()), per stream:\n\n' +
        table(
          [
            'subscribers',
            'RSS KiB',
            'V8 heap used KiB',
            'external KiB',
            'RSS outside the V8 heap KiB',
          ],
          probed.map((r) => {
            const { before, after } = r.probe ?? { before: ZERO_PROBE, after: ZERO_PROBE };
            const n = Math.max(1, r.opened);
            const per = (k: 'rss' | 'heapUsed' | 'external'): string =>
              kib((after[k] - before[k]) / n);
            const outside = (after.rss - after.heapTotal - (before.rss - before.heapTotal)) / n;
            return [int(r.subscribers), per('rss'), per('heapUsed'), per('external'), kib(outside)];
          }),
        );
  return `#### Delivery latency and completeness\n\n${latency}\n\n#### Memory per held stream\n\n${memory}${probeTable}\n\n#### Ratios of medians (HTTP publish, lower is better for the sidecar)\n\n${ratioTable}`;
}

function rateTables(results: readonly RateResult[]): string {
  const summary = table(
    [
      'mode',
      'round',
      'server',
      'publish via',
      'subscribers',
      'sustained publishes/s',
      'first failing step',
      IDLE_HEAD,
      "others' CPU during (cores)",
    ],
    results.map((r) => {
      const fail = r.steps.find((s) => !s.sustained);
      const why =
        fail === undefined
          ? 'none (rate list exhausted)'
          : `${int(fail.rate)}/s: ${int(fail.achieved)}/s accepted, ${pct(fail.received, fail.expected)} delivered, p99 ${ms(fail.latency.p99)} ms`;
      return [
        r.mode,
        String(r.round),
        r.target,
        r.publisher,
        int(r.subscribers),
        int(r.sustained),
        why,
        idleCell(r.quiet),
        r.othersCores.toFixed(2),
      ];
    }),
  );
  const groups = new Map<string, RateResult[]>();
  for (const r of results) {
    const key = `${r.mode}|${r.target}|${r.publisher}|${r.subscribers}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const medians = table(
    ['mode', 'server', 'publish via', 'subscribers', 'runs', 'sustained publishes/s (median)'],
    [...groups.values()].map((rs) => {
      const first = rs[0] as RateResult;
      return [
        first.mode,
        first.target,
        first.publisher,
        int(first.subscribers),
        String(rs.length),
        int(med(rs, (r) => r.sustained)),
      ];
    }),
  );
  const rows: string[][] = [];
  for (const r of results) {
    for (const s of r.steps) {
      rows.push([
        r.mode,
        String(r.round),
        r.target,
        r.publisher,
        int(r.subscribers),
        int(s.rate),
        int(s.achieved),
        pct(s.received, s.expected),
        ms(s.latency.p50),
        ms(s.latency.p99),
        s.serverCpu.toFixed(1),
        s.clientCpu.toFixed(1),
        s.sustained ? 'yes' : 'no',
      ]);
    }
  }
  const steps = table(
    [
      'mode',
      'round',
      'server',
      'via',
      'subs',
      'target/s',
      'accepted/s',
      'delivered',
      'p50 ms',
      'p99 ms',
      'server CPU s',
      'client CPU s',
      'kept up',
    ],
    rows,
  );
  return `#### Publishes per second sustained\n\n${summary}\n\nMedians over the rounds:\n\n${medians}\n\n<details><summary>every rate step</summary>\n\n${steps}\n\n</details>`;
}

function rampTables(results: readonly RampResult[]): string {
  const parts: string[] = [];
  for (const r of results) {
    parts.push(
      `**${r.label}**, ${r.serverMode} (${r.workers} FPM workers, a pool of its own): most live streams with hello-world error-free: **${int(r.maxLiveWithHealthyHello)}** (before: ${Math.round(r.quiet.idlePct)} % idle, others ${r.quiet.othersCores.toFixed(2)} cores; others' CPU during ${r.othersCores.toFixed(2)} cores)\n\n` +
        table(
          [
            'streams requested',
            'heads 200',
            'live',
            'FPM workers held (max)',
            'held (mean)',
            'hello OK req/s',
            'hello errors (timeouts)',
            'hello p50 ms',
            'hello p99 ms',
          ],
          r.steps.map((s) => [
            int(s.streams),
            int(s.started),
            int(s.live),
            int(s.fpmHeldMax),
            s.fpmHeldMean.toFixed(1),
            int(s.hello.perSecond),
            `${int(s.hello.errors)} (${int(s.hello.timeouts)})`,
            Number.isNaN(s.hello.p50Ms) ? '-' : ms(s.hello.p50Ms),
            Number.isNaN(s.hello.p99Ms) ? '-' : ms(s.hello.p99Ms),
          ]),
        ),
    );
  }
  return `#### FPM workers needed\n\n${parts.join('\n\n')}`;
}

/** The whole Markdown report. */
export function renderReport(results: SseResults): string {
  const out: string[] = [];
  if (results.fanout.length > 0) out.push(fanoutTables(results.fanout));
  if (results.rate.length > 0) out.push(rateTables(results.rate));
  if (results.ramp.length > 0) out.push(rampTables(results.ramp));
  if (results.fanout.length > 0 || results.rate.length > 0) out.push(verdictTable(results));
  out.push(
    `"${IDLE_HEAD}": the share of the whole machine idle, and the cores used by processes outside the benchmark, in the second before the server started (after waiting for a quiet machine); "others' CPU during": the same during the measurement.`,
  );
  return out.join('\n\n');
}
