/**
 * Preloaded into the sidecar by bench/churn.ts (`node --expose-gc --import .../probe.ts`), never
 * in production: counts the GCs as they happen; on SIGUSR2 it runs two full GCs (not counted),
 * then writes process.memoryUsage(), the V8 heap's resident size, its spaces and the GC counts as
 * JSON to $CHURN_PROBE_FILE (written then renamed: never read half-written). When the file
 * $CHURN_PROBE_FILE.snapshot exists, a heap snapshot is written to the path it holds.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics, writeHeapSnapshot } from 'node:v8';

const file = process.env['CHURN_PROBE_FILE'] ?? '';
let n = 0;
/** [start, end] of each probe's forced GCs (performance.now()): their entries are not counted. */
const forced: Array<[number, number]> = [];
const gcs = { minor: 0, major: 0, ms: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (forced.some(([a, b]) => entry.startTime >= a && entry.startTime <= b)) continue;
    // Node's gc entries carry { kind } in `detail`, which PerformanceEntry's type leaves out.
    const kind = (entry as { detail?: { kind?: number } | null }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.major++;
    else gcs.minor++;
    gcs.ms += entry.duration;
  }
}).observe({ entryTypes: ['gc'] });

process.on('SIGUSR2', () => {
  // Exposed by --expose-gc, which the benchmark passes with this module.
  const gc = (globalThis as { gc?: () => void }).gc;
  const start = performance.now();
  gc?.();
  gc?.();
  forced.push([start, performance.now()]);
  n++;
  const ask = `${file}.snapshot`;
  if (existsSync(ask)) {
    writeHeapSnapshot(readFileSync(ask, 'utf8'));
    rmSync(ask);
  }
  const spaces = Object.fromEntries(
    getHeapSpaceStatistics().map((s) => [
      s.space_name,
      { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size },
    ]),
  );
  const heapPhysical = getHeapStatistics().total_physical_size;
  const out = { n, ...process.memoryUsage(), heapPhysical, spaces, gcs };
  writeFileSync(`${file}.tmp`, JSON.stringify(out));
  renameSync(`${file}.tmp`, file);
});
