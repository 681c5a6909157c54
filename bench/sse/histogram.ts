/**
 * A log-bucketed latency histogram (1 % buckets from 1 µs to ~30 min): O(1) per sample and a
 * fixed few KiB whatever the sample count, so a 10,000-subscriber run can record every delivery.
 * Percentiles are the upper edge of their bucket (at most 1 % high); max is exact.
 */

const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 2200;

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export class LatencyHistogram {
  readonly #counts = new Float64Array(BUCKETS);
  #count = 0;
  #sumUs = 0;
  #maxUs = 0;

  /** Records one latency in microseconds (values below 1 µs, clock noise, count as 1 µs). */
  record(us: number): void {
    const v = us < 1 ? 1 : us;
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log(v) / LOG_GROWTH));
    this.#counts[i] = (this.#counts[i] ?? 0) + 1;
    this.#count++;
    this.#sumUs += v;
    if (v > this.#maxUs) this.#maxUs = v;
  }

  /** Percentiles in milliseconds. */
  summary(): LatencySummary {
    const at = (q: number): number => {
      if (this.#count === 0) return 0;
      const rank = Math.ceil(q * this.#count);
      let seen = 0;
      for (let i = 0; i < BUCKETS; i++) {
        seen += this.#counts[i] ?? 0;
        if (seen >= rank) return Math.min(GROWTH ** (i + 1), this.#maxUs) / 1000;
      }
      return this.#maxUs / 1000;
    };
    return {
      count: this.#count,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      p999: at(0.999),
      max: this.#maxUs / 1000,
      mean: this.#count === 0 ? 0 : this.#sumUs / this.#count / 1000,
    };
  }
}
