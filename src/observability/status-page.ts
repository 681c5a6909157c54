/**
 * The status page on the admin listener: one HTML page (no build step, no library) with the
 * version, revision and uptime, the numbers of now (FPM's with their age) and charts of the last
 * 15 minutes from StatusHistory, drawn as inline SVG on the server. A few lines of inline script
 * re-fetch the panel (`/status/panel`, the same HTML) every sample; without JavaScript a meta
 * refresh does it. `/status.json` carries the same data for tools and tests.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { BuildInfo } from './build-info.ts';
import type { FpmStatus } from './fpm-status.ts';
import {
  escapeHtml,
  formatValue,
  renderChart,
  spanLabel,
  type ChartSpec,
} from './status-charts.ts';
import type { HistorySample, StatusHistory } from './status-history.ts';
import type { FpmReading, StatusSources, StatusTotals } from './status-sources.ts';

export interface StatusPageOptions {
  sources: StatusSources;
  history: StatusHistory;
  build: BuildInfo;
  /** The clock, ms since the epoch; default Date.now. */
  now?: () => number;
  /** Seconds the process has run; default process.uptime. */
  uptimeSeconds?: () => number;
}

/** FPM's figures as /status.json shows them: with their age when known. */
export type FpmJson =
  | Exclude<FpmReading, { state: 'ok' }>
  | ({ state: 'ok'; at: number; ageSeconds: number } & FpmStatus);

/** The body of GET /status.json. */
export interface StatusJson {
  version: string;
  revision: string;
  nodeVersion: string;
  uptimeSeconds: number;
  /** When this was read, ms since the epoch. */
  time: number;
  sampleMs: number;
  windowMs: number;
  /** The newest sample's seq (0 before the first). */
  seq: number;
  /** History samples lost to a source that threw. */
  sampleErrors: number;
  now: {
    streams: { hold: number; events: number; passthrough: number };
    channels: number;
    pool: { open: number; busy: number; idle: number; queued: number; max: number };
    fpm: FpmJson;
    totals: Omit<StatusTotals, 'latencyBuckets'>;
  };
  /** Oldest first. */
  samples: HistorySample[];
}

/** Reads every source now, with the history. */
export function statusJson(options: StatusPageOptions): StatusJson {
  const { sources, history, build } = options;
  const time = (options.now ?? Date.now)();
  const hub = sources.hub();
  const { published, delivered, requests, serverErrors } = sources.totals();
  const reading = sources.fpm();
  const fpm: FpmJson =
    reading.state === 'ok'
      ? {
          state: 'ok',
          at: reading.at,
          ageSeconds: Math.max(0, Math.round((time - reading.at) / 1000)),
          ...reading.status,
        }
      : reading;
  return {
    version: build.version,
    revision: build.revision,
    nodeVersion: build.nodeVersion,
    uptimeSeconds: Math.round((options.uptimeSeconds ?? process.uptime)()),
    time,
    sampleMs: history.sampleMs,
    windowMs: history.windowMs,
    seq: history.seq,
    sampleErrors: history.sampleErrors,
    now: {
      streams: {
        hold: hub.byKind.hold,
        events: hub.byKind.events,
        passthrough: sources.passthroughStreams(),
      },
      channels: hub.channels,
      pool: sources.pool(),
      fpm,
      totals: { published, delivered, requests, serverErrors },
    },
    samples: history.samples(),
  };
}

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** The charts of the page, from the samples (oldest first). */
export function chartSpecs(samples: readonly HistorySample[]): ChartSpec[] {
  const of = <T>(pick: (s: HistorySample) => T): T[] => samples.map(pick);
  return [
    {
      id: 'chart-requests',
      title: 'HTTP requests / s',
      unit: '/s',
      series: [{ label: 'requests', style: 'main', values: of((s) => s.requestsPerS) }],
    },
    {
      id: 'chart-latency',
      title: 'Latency, streams excluded',
      unit: ' ms',
      series: [
        { label: 'p50', style: 'main', values: of((s) => s.p50Ms) },
        { label: 'p99', style: 'second', values: of((s) => s.p99Ms) },
      ],
    },
    {
      id: 'chart-errors',
      title: '5xx responses / s',
      unit: '/s',
      series: [{ label: '5xx', style: 'bad', values: of((s) => s.serverErrorsPerS) }],
    },
    {
      id: 'chart-streams',
      title: 'Held streams (hold, events endpoint, passthrough)',
      unit: '',
      series: [{ label: 'streams', style: 'main', values: of((s) => s.streams) }],
    },
    {
      id: 'chart-events',
      title: 'Publishes and deliveries / s',
      unit: '/s',
      series: [
        { label: 'publishes', style: 'main', values: of((s) => s.publishesPerS) },
        { label: 'deliveries', style: 'second', values: of((s) => s.deliveriesPerS) },
      ],
    },
    {
      id: 'chart-busy',
      title: 'PHP busy: FastCGI connections (peak) and FPM workers (last scrape)',
      unit: '',
      series: [
        { label: 'FastCGI busy', style: 'main', values: of((s) => s.poolBusy) },
        { label: 'FPM active', style: 'second', values: of((s) => s.fpmActive) },
        { label: 'FastCGI cap', style: 'cap', values: of((s) => s.poolMax) },
      ],
    },
    {
      id: 'chart-queue',
      title: 'Waiting for PHP: FastCGI queue (peak) and FPM listen queue',
      unit: '',
      series: [
        { label: 'FastCGI queue', style: 'main', values: of((s) => s.poolQueued) },
        { label: 'FPM listen queue', style: 'second', values: of((s) => s.fpmListenQueue) },
      ],
    },
  ];
}

/** What the page says of FPM's own figures, and how old they are. */
function fpmHtml(fpm: FpmJson): string {
  switch (fpm.state) {
    case 'off':
      return '<span id="fpm-age">FPM figures: not scraped (set fpm.status_path to the pool\'s pm.status_path)</span>';
    case 'pending':
      return '<span id="fpm-age">FPM figures: waiting for the first status scrape</span>';
    case 'failed':
      return `<span id="fpm-age" class="bad">FPM figures unknown: the status scrape failed (${escapeHtml(fpm.error)})</span>`;
    case 'ok':
      return (
        `workers active <b>${fpm.activeProcesses} / ${fpm.totalProcesses}</b> · listen queue <b>${fpm.listenQueue}</b>` +
        ` · max children reached <b>${fpm.maxChildrenReached}</b>` +
        ` — <span id="fpm-age">FPM figures as of ${fpm.ageSeconds} s ago</span>`
      );
  }
}

/** The part of the page that the script (or the meta refresh) renews: a <div id="panel">. */
export function renderPanel(data: StatusJson): string {
  const { now } = data;
  const shortRevision = data.revision === 'unknown' ? 'unknown' : data.revision.slice(0, 12);
  const view = {
    times: data.samples.map((s) => s.at),
    nowMs: data.time,
    windowMs: data.windowMs,
  };
  const charts = chartSpecs(data.samples)
    .map((spec) => renderChart(spec, view))
    .join('\n');
  const every = formatValue(data.sampleMs / 1000);
  return `<div id="panel" data-seq="${data.seq}">
<p class="build">version <b id="version">${escapeHtml(data.version)}</b> · revision <b id="revision" title="${escapeHtml(data.revision)}">${escapeHtml(shortRevision)}</b> · Node ${escapeHtml(data.nodeVersion)} · up <b id="uptime">${escapeHtml(formatDuration(data.uptimeSeconds))}</b></p>
<dl class="now">
<dt>Streams</dt><dd>hold <b id="hold">${now.streams.hold}</b> · events <b id="events">${now.streams.events}</b> · passthrough (pins a worker) <b id="passthrough">${now.streams.passthrough}</b> · channels <b id="channels">${now.channels}</b></dd>
<dt>FastCGI pool, now</dt><dd>busy <b id="pool">${now.pool.busy} / ${now.pool.max}</b> · queued <b id="queued">${now.pool.queued}</b> · open ${now.pool.open}</dd>
<dt>PHP-FPM</dt><dd>${fpmHtml(now.fpm)}</dd>
</dl>
<p class="window">Last ${escapeHtml(spanLabel(data.windowMs))}, one point every ${escapeHtml(every)} s; ${data.samples.length} points so far.</p>
<div class="charts">
${charts}
</div>
</div>`;
}

const CSS = `body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:64rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem;margin:0 0 .3rem} #state{font-size:.85rem;color:#666;font-weight:normal}
.build,.window{color:#444;font-size:.9rem} .bad{color:#c0392b}
dl.now{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;font-size:.95rem}
dl.now dt{color:#666} dl.now dd{margin:0;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(28rem,1fr));gap:1rem}
.chart{margin:0;border:1px solid #ddd;border-radius:.5rem;padding:.5rem .7rem}
.chart figcaption{font-size:.9rem;display:flex;flex-wrap:wrap;gap:.2rem .8rem}
.chart .title{font-weight:600} .chart .now{color:#444;font-variant-numeric:tabular-nums}
.chart svg{width:100%;height:auto;display:block} .chart text{font-size:11px;fill:#555}
.key::before{content:"";display:inline-block;width:1.2em;height:0;vertical-align:middle;margin-right:.3em;border-top:2px solid}
.key-main::before{border-color:#4b2e83} .key-second::before{border-color:#c46a00;border-top-style:dashed}
.key-bad::before{border-color:#c0392b} .key-cap::before{border-color:#888;border-top-style:dotted}`;

/** Re-fetches the panel; one fetch at a time, so a slow admin listener is not piled on. */
function script(refreshMs: number): string {
  return `(() => {
  const live = document.getElementById('live');
  const state = document.getElementById('state');
  let busy = false;
  state.textContent = 'live';
  setInterval(() => {
    if (busy) return;
    busy = true;
    fetch('status/panel', { cache: 'no-store' })
      .then((r) => { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then((html) => { live.innerHTML = html; state.textContent = 'live'; })
      .catch(() => { state.textContent = 'reconnecting…'; })
      .finally(() => { busy = false; });
  }, ${refreshMs});
})();`;
}

function send(
  req: IncomingMessage,
  res: ServerResponse,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(200, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * Routes for startAdminServer({ routes }): "/" (the page), "/status/panel" (its live part) and
 * "/status.json". The page refreshes once per sample interval, at most every 5 s.
 */
export function statusPageRoutes(
  options: StatusPageOptions,
): Record<string, (req: IncomingMessage, res: ServerResponse) => void> {
  const refreshMs = Math.max(250, Math.min(options.history.sampleMs, 5000));
  const js = script(refreshMs);
  // The only script the page may run is this one (its hash); the panel's markup carries none.
  const csp = `default-src 'none'; script-src 'sha256-${createHash('sha256').update(js).digest('base64')}'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'`;
  return {
    '/': (req, res) => {
      const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>askr-sidecar status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="${Math.max(1, Math.round(refreshMs / 1000))}"></noscript>
<style>${CSS}</style></head><body>
<h1>askr-sidecar status <small id="state">static (no JavaScript: the page reloads itself)</small></h1>
<div id="live">${renderPanel(statusJson(options))}</div>
<script>${js}</script>
</body></html>
`;
      send(req, res, 'text/html; charset=utf-8', page, { 'content-security-policy': csp });
    },
    '/status/panel': (req, res) => {
      send(req, res, 'text/html; charset=utf-8', renderPanel(statusJson(options)));
    },
    '/status.json': (req, res) => {
      send(req, res, 'application/json; charset=utf-8', `${JSON.stringify(statusJson(options))}\n`);
    },
  };
}
