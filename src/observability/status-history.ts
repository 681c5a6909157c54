/**
 * The status page's memory: a ring buffer of one sample per interval (default 5 s x 180 = the last
 * 15 minutes) taken from the StatusSources. Rates come from the difference of two reads of the
 * cumulative totals, p50/p99 from the difference of two reads of the latency histogram, and the
 * pool's busy and queued counts are the peak of probes within the interval (a queue that formed
 * and drained between two samples still shows). Invariants: bounded memory (`points` samples,
 * nothing else grows), a source that throws costs one probe or sample (counted in
 * sampleErrors, logged rate-limited), never the process; the timer is unref'd.
 */
import type { Logger } from 'pino';
import { ConfigError, toError } from '../errors.ts';
import { RateLimitedLog } from './rate-limited-log.ts';
import { bucketDelta, quantileMs } from './latency-histogram.ts';
import type { StatusSources, StatusTotals } from './status-sources.ts';

/** One interval of the sidecar's life. Rates are per second over the interval. */
export interface HistorySample {
  /** Sequence number: 1 for the first sample since start, one more for each next. */
  seq: number;
  /** End of the interval, ms since the epoch. */
  at: number;
  /** Length of the interval, s (the timer's, measured). */
  seconds: number;
  requestsPerS: number;
  serverErrorsPerS: number;
  /** Latency quantiles of the requests finished in the interval (streams excluded), ms; null: none finished. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Streams open at the end of the interval: hold + events endpoint + passthrough. */
  streams: number;
  publishesPerS: number;
  deliveriesPerS: number;
  /** Peak FastCGI connections busy and requests queued for one, within the interval. */
  poolBusy: number;
  poolQueued: number;
  /** The pool's cap at the end of the interval. */
  poolMax: number;
  /** FPM's own figures from its last status scrape at the end of the interval; null: unknown. */
  fpmActive: number | null;
  fpmTotal: number | null;
  fpmListenQueue: number | null;
}

export interface StatusHistoryOptions {
  sources: StatusSources;
  /** Where a failing probe or sample is reported (warn, at most once a minute). */
  logger: Logger;
  /** Length of one interval, ms; default 5000. Tests shorten it. */
  sampleMs?: number | undefined;
  /** Samples kept; default 180 (15 minutes of 5 s samples). */
  points?: number;
  /** The clock, ms since the epoch; default Date.now (tests pass their own). */
  now?: () => number;
}

/** Probes of the gauges are at most this far apart, whatever the sample interval. */
const MAX_PROBE_MS = 1000;

/**
 * Samples the sources on a timer once start() is called; probe() and sample() are public so a
 * test can drive it by hand. Throws ConfigError for a sampleMs under 100 or a points count under 2.
 */
export class StatusHistory {
  readonly sampleMs: number;
  readonly points: number;
  readonly #sources: StatusSources;
  readonly #now: () => number;
  /** The ring: `#count` samples, the oldest at `#head`. */
  readonly #ring: HistorySample[] = [];
  #head = 0;
  #seq = 0;
  #last: { at: number; totals: StatusTotals };
  #peakBusy = 0;
  #peakQueued = 0;
  #timer: NodeJS.Timeout | undefined;
  #errors = 0;
  readonly #errorLog: RateLimitedLog;

  constructor(options: StatusHistoryOptions) {
    this.sampleMs = options.sampleMs ?? 5000;
    this.points = options.points ?? 180;
    if (!Number.isFinite(this.sampleMs) || this.sampleMs < 100)
      throw new ConfigError(
        `status history sample interval must be >= 100 ms, got ${this.sampleMs}`,
      );
    if (!Number.isInteger(this.points) || this.points < 2)
      throw new ConfigError(`status history must keep >= 2 samples, got ${this.points}`);
    this.#sources = options.sources;
    this.#now = options.now ?? Date.now;
    this.#errorLog = new RateLimitedLog(options.logger, 'warn', 60_000);
    this.#last = { at: this.#now(), totals: this.#sources.totals() };
  }

  /** The time the history covers when full, ms. */
  get windowMs(): number {
    return this.sampleMs * this.points;
  }

  /** Reads the pool's gauges and keeps the interval's peaks. */
  probe(): void {
    const { busy, queued } = this.#sources.pool();
    this.#peakBusy = Math.max(this.#peakBusy, busy);
    this.#peakQueued = Math.max(this.#peakQueued, queued);
  }

  /** Closes the current interval: computes its sample, stores it (dropping the oldest when full), returns it. */
  sample(): HistorySample {
    this.probe();
    const at = this.#now();
    const totals = this.#sources.totals();
    const before = this.#last.totals;
    // A clock that did not move (or went back) would divide by 0: count the interval as 1 ms.
    const seconds = Math.max(1, at - this.#last.at) / 1000;
    const rate = (now: number, then: number): number => Math.max(0, now - then) / seconds;
    const latency = bucketDelta(totals.latencyBuckets, before.latencyBuckets);
    const hub = this.#sources.hub();
    const pool = this.#sources.pool();
    const fpm = this.#sources.fpm();
    const status = fpm.state === 'ok' ? fpm.status : null;
    this.#seq += 1;
    const s: HistorySample = {
      seq: this.#seq,
      at,
      seconds,
      requestsPerS: rate(totals.requests, before.requests),
      serverErrorsPerS: rate(totals.serverErrors, before.serverErrors),
      p50Ms: quantileMs(latency, 0.5),
      p99Ms: quantileMs(latency, 0.99),
      streams: hub.byKind.hold + hub.byKind.events + this.#sources.passthroughStreams(),
      publishesPerS: rate(totals.published, before.published),
      deliveriesPerS: rate(totals.delivered, before.delivered),
      poolBusy: this.#peakBusy,
      poolQueued: this.#peakQueued,
      poolMax: pool.max,
      fpmActive: status?.activeProcesses ?? null,
      fpmTotal: status?.totalProcesses ?? null,
      fpmListenQueue: status?.listenQueue ?? null,
    };
    this.#last = { at, totals };
    this.#peakBusy = pool.busy;
    this.#peakQueued = pool.queued;
    if (this.#ring.length < this.points) this.#ring.push(s);
    else {
      this.#ring[this.#head] = s;
      this.#head = (this.#head + 1) % this.points;
    }
    return s;
  }

  /** The samples kept, oldest first (a copy). */
  samples(): HistorySample[] {
    return [...this.#ring.slice(this.#head), ...this.#ring.slice(0, this.#head)];
  }

  /** The newest sample's seq, 0 before the first. */
  get seq(): number {
    return this.#seq;
  }

  /** Probes or samples the timer could not take because a source threw. */
  get sampleErrors(): number {
    return this.#errors;
  }

  /**
   * Probes at least every second and samples every sampleMs, on one unref'd timer. Idempotent.
   * The interval starts now: the counts before it are not charted.
   */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#last = { at: this.#now(), totals: this.#sources.totals() };
    const probesPerSample = Math.ceil(this.sampleMs / MAX_PROBE_MS);
    let probes = 0;
    this.#timer = setInterval(() => {
      probes += 1;
      try {
        if (probes < probesPerSample) this.probe();
        else {
          probes = 0;
          this.sample();
        }
      } catch (err) {
        // The page misses one point; the next interval starts from the last good read.
        this.#errors += 1;
        this.#errorLog.log({ err: toError(err) }, 'status page: a history sample failed');
      }
    }, this.sampleMs / probesPerSample);
    this.#timer.unref();
  }

  /** Stops the timer; the samples stay readable. Idempotent. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
