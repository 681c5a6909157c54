/**
 * The status page's sources (StatusSources) for a running sidecar: the hub's and the pool's own
 * stats, counts taken from the hooks the hub, the HTTP server and the hold interceptor already
 * call (StatusTally), and FPM's figures. Invariant: the tally counts exactly what the matching
 * askr_* counters count, from the same hook calls, so the page and /metrics agree.
 */
import type { Registry } from 'prom-client';
import type { FcgiPool } from '../fastcgi/pool.ts';
import type { HttpServerDeps } from '../http/server.ts';
import type { Hub, HubHooks } from '../sse/hub.ts';
import type { FpmFigures, StatusSources } from './status-page.ts';

/** Counts since start for the status page, kept by wrapping the hooks metrics already get. */
export class StatusTally {
  #published = 0;
  #delivered = 0;
  #requests = 0;
  #passthrough = 0;

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

  /** The HTTP server's hooks: finished requests are counted, then `inner` is called. */
  httpHooks<T extends Pick<HttpServerDeps, 'onRequestDone'>>(inner: T): T {
    return {
      ...inner,
      onRequestDone: (...args: Parameters<NonNullable<HttpServerDeps['onRequestDone']>>) => {
        this.#requests += 1;
        inner.onRequestDone?.(...args);
      },
    };
  }

  /** A passthrough stream started (+1) or ended (-1). */
  passthrough(delta: 1 | -1): void {
    this.#passthrough = Math.max(0, this.#passthrough + delta);
  }

  totals(): { published: number; delivered: number; requests: number } {
    return { published: this.#published, delivered: this.#delivered, requests: this.#requests };
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
  /** FPM's figures, or null when FPM's status page is not scraped. */
  fpm: (() => Promise<FpmFigures | null>) | null;
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
    fpm: deps.fpm ?? (() => Promise.resolve(null)),
  };
}

/**
 * FPM's figures as the status poller (fpm-status.ts) last published them. The poller keeps its
 * parsed sample to itself, so this is the one place that still reads series back by name; the
 * series are absent while the scrape fails, which reads as null.
 */
export function fpmFiguresFromRegistry(registry: Registry): () => Promise<FpmFigures | null> {
  const read = async (name: string, state?: string): Promise<number | null> => {
    const metric = registry.getSingleMetric(name);
    if (metric === undefined) return null;
    const { values } = await metric.get();
    const value = values.find((v) => state === undefined || v.labels['state'] === state)?.value;
    return value ?? null;
  };
  return async () => {
    const figures = {
      active: await read('askr_fpm_processes', 'active'),
      idle: await read('askr_fpm_processes', 'idle'),
      total: await read('askr_fpm_processes', 'total'),
      listenQueue: await read('askr_fpm_listen_queue'),
      maxChildrenReached: await read('askr_fpm_max_children_reached_total'),
    };
    const { active, idle, total, listenQueue, maxChildrenReached } = figures;
    if (
      active === null ||
      idle === null ||
      total === null ||
      listenQueue === null ||
      maxChildrenReached === null
    )
      return null;
    return { active, idle, total, listenQueue, maxChildrenReached };
  };
}
