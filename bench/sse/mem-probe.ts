/**
 * Preloaded into the sidecar by the benchmark (`node --expose-gc --import .../mem-probe.ts`) when
 * BENCH_MEMORY_PROBE=1: on SIGUSR2 it runs a full GC, then writes process.memoryUsage() as JSON to
 * $BENCH_PROBE_FILE, and with BENCH_PROBE_SNAPSHOT=DIR a heap snapshot to
 * DIR/sidecar-PID-N.heapsnapshot (compare two with heap-summary.ts). Never loaded in production.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';

const file = process.env['BENCH_PROBE_FILE'] ?? '';
let n = 0;
process.on('SIGUSR2', () => {
  // Exposed by --expose-gc, which the benchmark passes with this module.
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  n++;
  const snapDir = process.env['BENCH_PROBE_SNAPSHOT'] ?? '';
  if (snapDir !== '' && snapDir !== '0') {
    writeHeapSnapshot(join(snapDir, `sidecar-${process.pid}-${n}.heapsnapshot`));
  }
  // Written then renamed, so the benchmark never reads half a file.
  const spaces = Object.fromEntries(
    getHeapSpaceStatistics().map((sp) => [
      sp.space_name,
      { size: sp.space_size, used: sp.space_used_size, physical: sp.physical_space_size },
    ]),
  );
  writeFileSync(`${file}.tmp`, JSON.stringify({ n, ...process.memoryUsage(), spaces }));
  renameSync(`${file}.tmp`, file);
});
