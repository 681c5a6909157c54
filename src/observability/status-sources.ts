/**
 * The status page's sources (StatusSources) for a running sidecar: the hub's and the pool's own
 * stats, counts taken from the hooks the hub, the HTTP server and the hold interceptor already
 * call (StatusTally), and FPM's figures from the status poller with their time. Invariant: the
 * tally counts exactly what the matching askr_* counters count, from the same hook calls, so the
 * page and /metrics agree.
 */
import type { FcgiPool } from '../fastcgi/pool.ts';
import type { HttpServerDeps } from '../http/server.ts';
import type { Hub, HubHooks } from '../sse/hub.ts';
import type { FpmStatus, FpmStatusPoller } from './fpm-status.ts';
import { LatencyHistogram } from './latency-histogram.ts';

/** Counts since start (cumulative: a reader takes rates from two reads). */
export interface StatusTotals {
  /** Publishes accepted by the hub. */
  published: number;
  /** Event writes to streams. */
  delivered: number;
  /** Client requests finished (streams included). */
  requests: number;
  /** Of those, answered 5xx. */
  serverErrors: number;
  /**
   * Per-bucket counts of request durations (LATENCY_BOUNDS_MS), streams excluded: a stream
   * lasting hours is not a latency (askr_http_request_duration_seconds leaves them out too).
   */
  latencyBuckets: number[];
}

/** What the page knows of FPM's own figures. */
export type FpmReading =
  /** FPM's status page is not scraped (an external FPM without fpm.status_path). */
  | { state: 'off' }
  /** No scrape finished yet. */
  | { state: 'pending' }
  /** The last scrape failed: the figures are unknown (the askr_fpm_* series are absent). */
  | { state: 'failed'; error: string }
  /** The last scrape's figures, and when it finished (ms since the epoch). */
  | { state: 'ok'; status: FpmStatus; at: number };

/**
 * Where the page's numbers come from: typed readers of the components' state, no metric names
 * (a renamed metric cannot silently zero the page). Every reader is synchronous and cheap: the
 * history calls them once per probe.
 */
export interface StatusSources {
  /** Streams the hub holds, by kind, and its channels (Hub.stats()). */
  hub(): { byKind: { hold: number; events: number }; channels: number };
  /** Passthrough streams open now (each pins a PHP worker). */
  passthroughStreams(): number;
  /** Counts since start. */
  totals(): StatusTotals;
  /** The FastCGI pool now, with its current cap. */
  pool(): { open: number; busy: number; idle: number; queued: number; max: number };
  /** FPM's figures from its last status scrape. */
  fpm(): FpmReading;
}

/** Counts since start for the status page, kept by wrapping the hooks metrics already get. */
export class StatusTally {
  #published = 0;
  #delivered = 0;
  #requests = 0;
  #serverErrors = 0;
  #passthrough = 0;
  readonly #latency = new LatencyHistogram();

  /** The hub's hooks: publishes and deliveries are counted, then `inner` is called. */
  hubHooks(inner: HubHooks): HubHooks {
    return {
      ...inner,
      onPublish: (ingress, channels) => {
        this.#published += 1;
        inner.onPublish?.(ingress, channels);
      },
      onDeliver: (count, lagMs) => {
        if (count > 0) this.#delivered += count;
        inner.onDeliver?.(count, lagMs);
      },
    };
  }

  /**
   * The HTTP server's hooks: finished requests are counted (5xx apart) and their durations go to
   * the latency histogram (streams excepted), then `inner` is called.
   */
  httpHooks<T extends Pick<HttpServerDeps, 'onRequestDone'>>(inner: T): T {
    return {
      ...inner,
      onRequestDone: (...args: Parameters<NonNullable<HttpServerDeps['onRequestDone']>>) => {
        const [ctx, status, durationMs] = args;
        this.#requests += 1;
        if (status >= 500 && status <= 599) this.#serverErrors += 1;
        if (ctx.kind !== 'sse') this.#latency.record(durationMs);
        inner.onRequestDone?.(...args);
      },
    };
  }

  /** A passthrough stream started (+1) or ended (-1). */
  passthrough(delta: 1 | -1): void {
    this.#passthrough = Math.max(0, this.#passthrough + delta);
  }

  totals(): StatusTotals {
    return {
      published: this.#published,
      delivered: this.#delivered,
      requests: this.#requests,
      serverErrors: this.#serverErrors,
      latencyBuckets: this.#latency.counts(),
    };
  }

  passthroughStreams(): number {
    return this.#passthrough;
  }
}

export interface StatusSourceDeps {
  hub: Hub;
  pool: FcgiPool;
  /** The pool's cap now (it changes with a reload of fastcgi.pool_size). */
  poolMax(): number;
  tally: StatusTally;
  /** The FPM status poller, or null when FPM's status page is not scraped. */
  fpm: Pick<FpmStatusPoller, 'lastStatus' | 'lastError'> | null;
}

/** FPM's reading from a poller (or its absence). */
export function fpmReading(poller: StatusSourceDeps['fpm']): FpmReading {
  if (poller === null) return { state: 'off' };
  const last = poller.lastStatus();
  if (last !== null) return { state: 'ok', status: last.sample, at: last.at };
  const error = poller.lastError();
  return error === null ? { state: 'pending' } : { state: 'failed', error };
}

export function statusSources(deps: StatusSourceDeps): StatusSources {
  const { hub, pool, tally } = deps;
  return {
    hub: () => hub.stats(),
    passthroughStreams: () => tally.passthroughStreams(),
    totals: () => tally.totals(),
    pool: () => {
      const { open, busy, idle, queued } = pool.stats();
      return { open, busy, idle, queued, max: deps.poolMax() };
    },
    fpm: () => fpmReading(deps.fpm),
  };
}
