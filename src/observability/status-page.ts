/**
 * The status page on the admin listener: one small HTML page (no build step) showing held
 * streams, channels, publish and delivery rates and FPM pool saturation, updated live over the
 * sidecar's own SSE (`/status/events`, one JSON snapshot per second; rates are computed by the
 * page from consecutive totals).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { encodeFrame } from '../sse/sse-encoder.ts';

export interface StatusSnapshot {
  time: number;
  uptimeSeconds: number;
  streams: { hold: number; events: number; passthrough: number };
  channels: number;
  publishedTotal: number;
  deliveredTotal: number;
  requestsTotal: number;
  pool: { open: number; busy: number; idle: number; queued: number; max: number };
  fpm: FpmFigures | null;
}

/** PHP-FPM's own figures, from its status page. */
export interface FpmFigures {
  active: number;
  idle: number;
  total: number;
  listenQueue: number;
  maxChildrenReached: number;
}

/**
 * Where the page's numbers come from: typed readers of the components' state, no metric names
 * (a renamed metric cannot silently zero the page). Any other view of the same state (charts)
 * can take these too.
 */
export interface StatusSources {
  /** Streams the hub holds, by kind, and its channels (Hub.stats()). */
  hub(): { byKind: { hold: number; events: number }; channels: number };
  /** Passthrough streams open now (each pins a PHP worker). */
  passthroughStreams(): number;
  /** Counts since start: publishes accepted by the hub, event writes to streams, requests finished. */
  totals(): { published: number; delivered: number; requests: number };
  /** The FastCGI pool now, with its current cap. */
  pool(): { open: number; busy: number; idle: number; queued: number; max: number };
  /** FPM's figures from its last status scrape; null when there is none or it failed. */
  fpm(): Promise<FpmFigures | null>;
}

/** One sample of every source. */
export async function statusSnapshot(sources: StatusSources): Promise<StatusSnapshot> {
  const hub = sources.hub();
  const totals = sources.totals();
  return {
    time: Date.now(),
    uptimeSeconds: process.uptime(),
    streams: {
      hold: hub.byKind.hold,
      events: hub.byKind.events,
      passthrough: sources.passthroughStreams(),
    },
    channels: hub.channels,
    publishedTotal: totals.published,
    deliveredTotal: totals.delivered,
    requestsTotal: totals.requests,
    pool: sources.pool(),
    fpm: await sources.fpm(),
  };
}

export interface StatusPageOptions {
  sources: StatusSources;
  intervalMs?: number;
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>askr-sidecar status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:52rem;color:#222}
 h1{font-size:1.4rem} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.8rem}
 .card{border:1px solid #ddd;border-radius:.5rem;padding:.7rem 1rem}
 .card b{display:block;font-size:1.6rem;font-variant-numeric:tabular-nums}
 .card span{color:#666;font-size:.85rem} #state{font-size:.85rem;color:#666}
 .bar{height:.5rem;background:#eee;border-radius:.25rem;margin-top:.4rem}
 .bar i{display:block;height:100%;background:#4b2e83;border-radius:.25rem;width:0}
</style></head><body>
<h1>askr-sidecar status <small id="state">connecting…</small></h1>
<div class="grid">
 <div class="card"><span>held streams (hold)</span><b id="hold">–</b></div>
 <div class="card"><span>events endpoint streams</span><b id="events">–</b></div>
 <div class="card"><span>passthrough streams (pin a worker)</span><b id="passthrough">–</b></div>
 <div class="card"><span>channels</span><b id="channels">–</b></div>
 <div class="card"><span>publishes / s</span><b id="pubrate">–</b></div>
 <div class="card"><span>deliveries / s</span><b id="delrate">–</b></div>
 <div class="card"><span>HTTP requests / s</span><b id="reqrate">–</b></div>
 <div class="card"><span>FastCGI connections busy / max</span><b id="pool">–</b><div class="bar"><i id="poolbar"></i></div></div>
 <div class="card"><span>FastCGI queue</span><b id="queued">–</b></div>
 <div class="card"><span>FPM workers active / total</span><b id="fpm">–</b><div class="bar"><i id="fpmbar"></i></div></div>
 <div class="card"><span>FPM listen queue · max children reached</span><b id="fpmq">–</b></div>
</div>
<script>
const $ = (id) => document.getElementById(id);
let prev = null;
const rate = (now, before, key) => before ? ((now[key] - before[key]) / Math.max(0.001, (now.time - before.time) / 1000)).toFixed(1) : '–';
const es = new EventSource('/status/events');
es.onopen = () => { $('state').textContent = 'live'; };
es.onerror = () => { $('state').textContent = 'reconnecting…'; };
es.onmessage = (e) => {
  const s = JSON.parse(e.data);
  $('hold').textContent = s.streams.hold; $('events').textContent = s.streams.events;
  $('passthrough').textContent = s.streams.passthrough; $('channels').textContent = s.channels;
  $('pubrate').textContent = rate(s, prev, 'publishedTotal'); $('delrate').textContent = rate(s, prev, 'deliveredTotal');
  $('reqrate').textContent = rate(s, prev, 'requestsTotal');
  $('pool').textContent = s.pool.busy + ' / ' + s.pool.max; $('queued').textContent = s.pool.queued;
  $('poolbar').style.width = (100 * s.pool.busy / Math.max(1, s.pool.max)) + '%';
  if (s.fpm) {
    $('fpm').textContent = s.fpm.active + ' / ' + s.fpm.total;
    $('fpmbar').style.width = (100 * s.fpm.active / Math.max(1, s.fpm.total)) + '%';
    $('fpmq').textContent = s.fpm.listenQueue + ' · ' + s.fpm.maxChildrenReached;
  } else { $('fpm').textContent = 'n/a'; $('fpmq').textContent = 'n/a'; }
  prev = s;
};
</script></body></html>
`;

/** Routes for startAdminServer({ routes }): "/" (the page) and "/status/events" (the stream). */
export function statusPageRoutes(
  options: StatusPageOptions,
): Record<string, (req: IncomingMessage, res: ServerResponse) => void> {
  const intervalMs = options.intervalMs ?? 1000;
  return {
    '/': (_req, res) => {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(PAGE),
      });
      res.end(PAGE);
    },
    '/status/events': (_req, res) => {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      res.write(encodeFrame({ retryMs: 2000 }));
      let busy = false;
      const tick = (): void => {
        if (busy || res.destroyed) return;
        busy = true;
        statusSnapshot(options.sources)
          .then((s) => {
            if (!res.destroyed) res.write(encodeFrame({ data: JSON.stringify(s) }));
          })
          .catch(() => {
            // A failed snapshot skips one tick; the page keeps its last numbers.
          })
          .finally(() => {
            busy = false;
          });
      };
      tick();
      const timer = setInterval(tick, intervalMs);
      res.once('close', () => clearInterval(timer));
    },
  };
}
