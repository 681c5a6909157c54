/**
 * A small fixed-bucket latency histogram for the status page's p50/p99: cumulative counts since
 * start (the status tally feeds it from the request-done hook), from which the history takes one
 * interval's counts as the difference of two reads. Invariants: constant memory (one count per
 * bucket), record() never throws, quantiles interpolate within a bucket as Prometheus'
 * histogram_quantile() does, so the page reads like a dashboard over askr_* histograms would.
 */

/** Upper bounds of the buckets, ms; one more bucket counts everything above the last bound. */
export const LATENCY_BOUNDS_MS: readonly number[] = [
  0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
];

/** Cumulative per-bucket counts of request durations. */
export class LatencyHistogram {
  readonly #counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);

  /** Counts one duration, ms; a negative or non-finite one counts in the first bucket. */
  record(durationMs: number): void {
    const ms = Number.isFinite(durationMs) && durationMs > 0 ? durationMs : 0;
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > (LATENCY_BOUNDS_MS[i] ?? Infinity)) i += 1;
    this.#counts[i] = (this.#counts[i] ?? 0) + 1;
  }

  /** A copy of the counts since start, one per bucket (the last is the overflow bucket). */
  counts(): number[] {
    return this.#counts.slice();
  }
}

/** Per-bucket counts of one interval: `now - before`, bucket by bucket. */
export function bucketDelta(now: readonly number[], before: readonly number[]): number[] {
  return now.map((n, i) => Math.max(0, n - (before[i] ?? 0)));
}

/**
 * The q-quantile (0 < q < 1) of per-bucket counts, ms, linearly interpolated within its bucket
 * (the first bucket starts at 0); a quantile in the overflow bucket reads as the last bound.
 * Null when the counts are all 0 (nothing finished in the interval: no latency, not 0 ms).
 */
export function quantileMs(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i] ?? 0;
    if (count > 0 && seen + count >= rank) {
      const upper = LATENCY_BOUNDS_MS[i];
      const last = LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] ?? 0;
      if (upper === undefined) return last;
      const lower = i === 0 ? 0 : (LATENCY_BOUNDS_MS[i - 1] ?? 0);
      return lower + (upper - lower) * ((rank - seen) / count);
    }
    seen += count;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] ?? 0;
}
