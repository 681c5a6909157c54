/**
 * The sidecar's Prometheus metrics (docs/metrics.md): one `createMetrics(registry)` per registry,
 * with hook adapters for the pool, the hub, the HTTP server, the datagram ingress and the FPM
 * supervisor. Invariants: every label value comes from a fixed allow-list (never a path, channel
 * or client string), so the number of series is bounded; hooks never throw; gauges of pool/hub
 * state are read at scrape time (collect()), so the hot path only touches counters and
 * histograms; the whole output passes `promtool check metrics` (test/metrics-promtool.test.ts).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { readBuildInfo, type BuildInfo } from './build-info.ts';
import { DATAGRAM_REJECT_REASONS as CODEC_REJECT_REASONS } from '../broadcast/datagram-codec.ts';
import { IGNORED_FORMATS } from '../broadcast/grip-items.ts';
import type { GripHooks, GripItemOutcome } from '../broadcast/pushpin-publish.ts';
import type { FcgiPool, FcgiPoolHooks } from '../fastcgi/pool.ts';
import type { ClusterHooks } from '../cluster/cluster-node.ts';
import type { PhpHandlerHooks } from '../http/php-handler.ts';
import type { OpenFileCacheStats } from '../http/open-file-cache.ts';
import type { HttpServerDeps } from '../http/server.ts';
import type { RouteKind } from '../http/request-context.ts';
import type { Hub, HubHooks, IngressKind, LostReason } from '../sse/hub.ts';

export type PoolStats = Pick<ReturnType<FcgiPool['stats']>, 'open' | 'busy' | 'idle' | 'queued'>;
export type HubStats = ReturnType<Hub['stats']>;

/** Route kinds of askr_http_requests_total; `sse` is kept out of the latency histogram. */
export const REQUEST_KINDS = [
  'static',
  'php',
  'sse',
  'publish',
  'upstream',
  'internal',
  'error',
] as const satisfies readonly RouteKind[];
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'] as const;
/** Reasons the HTTP side reports through onRejected; anything else is counted as `other`. */
export const REQUEST_REJECT_REASONS = [
  'max_connections',
  'body_too_large',
  'header_too_large',
  'header_timeout',
  'bad_request',
  'bad_host',
  'bad_framing',
  'http_version',
  'method_not_allowed',
  'bad_channel',
  'stream_limit',
  'auth_denied',
  'auth_failed',
  'bad_hold',
  'publish_unauthorized',
  'publish_too_large',
  'publish_bad_request',
  'publish_bad_channel',
  'mercure_no_token',
  'mercure_invalid_token',
  'mercure_invalid_request',
  'mercure_insufficient_scope',
  'grip_off',
  'grip_unauthorized',
  'grip_not_acceptable',
  'grip_too_large',
  'grip_bad_request',
  'grant_invalid',
  'whisper_bad_request',
  'whisper_too_large',
  'whisper_forbidden',
  'whisper_rate',
  'other',
] as const;
export const DATAGRAM_REJECT_REASONS = [
  ...CODEC_REJECT_REASONS,
  'rejected_by_hub',
  'other',
] as const;
const TIMEOUT_KINDS = ['connect', 'send', 'read', 'queue'] as const;
const INGRESS_KINDS = [
  'datagram',
  'http',
  'grip',
  'internal',
  'mercure',
  'whisper',
] as const satisfies IngressKind[];
const LOST_REASONS = ['too_old', 'epoch', 'unknown_id', 'bus'] as const satisfies LostReason[];
const GRIP_OUTCOMES = [
  'sent',
  'reordered',
  'expired',
  'duplicate',
  'dropped',
  'noop',
] as const satisfies GripItemOutcome[];

/** Seconds. Request latency: static files in µs, PHP up to the 60 s read timeout. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Seconds. A stream lives from a refused request (ms) to max_lifetime (hours). */
const STREAM_BUCKETS = [0.1, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];
/** Seconds. Queue wait is 0 ms unless the pool is saturated; bounded by queue_timeout. */
const QUEUE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds. Hub fan-out is synchronous: µs for a few streams, ms for thousands. */
const LAG_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export interface MetricsOptions {
  /** Register Node's process metrics (registerNodeMetrics: process_*, nodejs_*); default true. */
  defaultMetrics?: boolean;
  /** The labels of askr_build_info; default readBuildInfo(). */
  buildInfo?: BuildInfo;
}

/**
 * prom-client's gauges that promtool rejects for their `_total` suffix (prometheus/client_js#283).
 * Each only sums its labelled sibling: sum(nodejs_active_handles) is the same number.
 */
const REDUNDANT_NODE_TOTALS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/** Registers prom-client's Node process metrics (process_*, nodejs_*) less REDUNDANT_NODE_TOTALS. */
export function registerNodeMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of REDUNDANT_NODE_TOTALS) registry.removeSingleMetric(name);
}

/**
 * Registers askr_build_info: always 1, its labels say what runs (version, revision,
 * node_version), the convention of prometheus_build_info. Throws if already registered.
 */
export function registerBuildInfo(registry: Registry, info: BuildInfo = readBuildInfo()): void {
  new Gauge({
    name: 'askr_build_info',
    help: 'Always 1; the labels name the askr-sidecar version, the git revision it was built from ("unknown" when the build did not know it) and the Node.js version.',
    labelNames: ['version', 'revision', 'node_version'] as const,
    registers: [registry],
  }).set({ version: info.version, revision: info.revision, node_version: info.nodeVersion }, 1);
}

/** Where collect()-time gauges read pool and hub state; either may be bound later or not at all. */
export interface MetricSources {
  pool?: () => PoolStats;
  hub?: () => HubStats;
  /** Bytes held in memory by buffered request bodies and responses, and their limit. */
  buffers?: () => { usedBytes: number; limitBytes: number };
  /**
   * The open-file cache in use (static.open_file_cache), null when off. A reload replaces the
   * cache object: its counters start at 0 again, which the metrics absorb (counters never go back).
   */
  fileCache?: () => { stats(): OpenFileCacheStats } | null;
}

export interface Metrics {
  readonly registry: Registry;
  /** Pass as FcgiPoolOptions.hooks. */
  poolHooks(): FcgiPoolHooks;
  /** Pass as ClusterNodeOptions.hooks: bus state, traffic, lag, errors. */
  clusterHooks(): Required<ClusterHooks>;
  /** Pass as PhpHandlerDeps.hooks: temp files and client timeouts. */
  phpHooks(): Required<PhpHandlerHooks>;
  /** Pass as HubOptions.hooks. */
  hubHooks(): HubHooks;
  /**
   * Spread into createHttpServer's deps: client connections, request counts, latency, upstream
   * time, rejections.
   */
  httpHooks(): Required<Pick<HttpServerDeps, 'onConnection' | 'onRequestDone' | 'onRejected'>>;
  /** One finished client request. `sse` durations go to askr_sse_stream_duration_seconds. */
  onRequestDone(kind: RouteKind, status: number, durationMs: number): void;
  /** A refused request; reasons outside REQUEST_REJECT_REASONS count as `other`. */
  onRejected(reason: string): void;
  /** A rejected datagram (DatagramIngressOptions.onReject); unknown reasons count as `other`. */
  onDatagramReject(reason: string): void;
  /** A Mercure URL pattern hit its evaluation time limit (it matches nothing from then on). */
  onMercurePatternAborted(): void;
  /** A lookup in (or eviction from) one of the Mercure verifier's caches (tokens, compiled patterns). */
  onMercureCache(cache: 'token' | 'pattern', outcome: 'hit' | 'miss' | 'evict'): void;
  /** Pass as PushpinPublishDeps.hooks (with onRejected): items and ignored formats. */
  gripHooks(): Required<Omit<GripHooks, 'onRejected'>>;
  /** The supervisor restarted php-fpm (ManagedFpmOptions.onRestart). */
  onFpmRestart(): void;
  /** Time from sending to FPM until the CGI head arrived, ms (RequestContext.upstreamMs). */
  observeUpstream(ms: number): void;
  /** A passthrough stream (PHP output streamed, worker pinned) started (+1) or ended (-1). */
  passthrough(delta: 1 | -1): void;
  /** Sets (merges) the state read by the pool/hub gauges at scrape time. */
  bindSources(sources: MetricSources): void;
}

function pick<T extends string>(allowed: readonly T[], value: string, fallback: T): T {
  return (allowed as readonly string[]).includes(value) ? (value as T) : fallback;
}

/** "2xx" for 200-299 ...; `other` outside 100-599 (Node accepts up to 999). */
export function statusClass(status: number): (typeof STATUS_CLASSES)[number] {
  if (!Number.isInteger(status) || status < 100 || status > 599) return 'other';
  return STATUS_CLASSES[Math.floor(status / 100) - 1] ?? 'other';
}

/**
 * Creates and registers every askr_* metric on `registry` (plus Node's process metrics unless
 * `options.defaultMetrics` is false). Throws if this registry already holds them: one call per
 * registry.
 */
export function createMetrics(registry: Registry, options: MetricsOptions = {}): Metrics {
  const registers = [registry];
  let sources: MetricSources = {};
  let passthroughOpen = 0;
  let clientConnectionsOpen = 0;

  if (options.defaultMetrics !== false) registerNodeMetrics(registry);
  registerBuildInfo(registry, options.buildInfo);

  // --- HTTP ---
  // nginx's stub_status "Active connections" and "accepts" (docs/metrics.md).
  const clientConnections: Gauge = new Gauge({
    name: 'askr_http_client_connections',
    help: 'Open client TCP (or unix socket) connections on the main listener, idle keep-alive and held streams included.',
    registers,
    collect: () => {
      clientConnections.set(clientConnectionsOpen);
    },
  });
  const clientConnectionsAccepted = new Counter({
    name: 'askr_http_client_connections_accepted_total',
    help: 'Client connections accepted by the main listener (those server.max_connections refused are not).',
    registers,
  });
  const requests = new Counter({
    name: 'askr_http_requests_total',
    help: 'Client requests finished, by route kind and status class (499 = client went away).',
    labelNames: ['kind', 'status_class'] as const,
    registers,
  });
  const requestDuration = new Histogram({
    name: 'askr_http_request_duration_seconds',
    help: 'Time from request head to response end, except SSE streams (askr_sse_stream_duration_seconds).',
    labelNames: ['kind'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const streamDuration = new Histogram({
    name: 'askr_sse_stream_duration_seconds',
    help: 'Lifetime of requests of kind sse (holds, events endpoint, passthrough), refused ones included.',
    buckets: STREAM_BUCKETS,
    registers,
  });
  const mercurePatternAborts = new Counter({
    name: 'askr_mercure_pattern_aborts_total',
    help: 'Mercure URL patterns (subscriptions or token grants) stopped at their evaluation time limit; such a pattern matches nothing from then on.',
    registers,
  });
  const mercureCache = new Counter({
    name: 'askr_mercure_cache_events_total',
    help: "Mercure verifier caches: cache=token (verified access tokens, mercure.token_cache_size) or pattern (compiled topic patterns, mercure.pattern_cache_size); outcome hit, miss or evict (the cache's bound reached).",
    labelNames: ['cache', 'outcome'] as const,
    registers,
  });
  const rejectedRequests = new Counter({
    name: 'askr_rejected_requests_total',
    help: 'Requests refused by a limit or a check, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });

  // --- FastCGI pool ---
  const connections = new Gauge({
    name: 'askr_fastcgi_connections',
    help: 'Open FastCGI connections by state (busy includes connecting).',
    labelNames: ['state'] as const,
    registers,
    collect: () => {
      const s = sources.pool?.();
      connections.set({ state: 'busy' }, s?.busy ?? 0);
      connections.set({ state: 'idle' }, s?.idle ?? 0);
    },
  });
  const connectionsOpen: Gauge = new Gauge({
    name: 'askr_fastcgi_connections_open',
    help: 'Open FastCGI connections (connected + connecting).',
    registers,
    collect: () => {
      connectionsOpen.set(sources.pool?.().open ?? 0);
    },
  });
  const queueLength: Gauge = new Gauge({
    name: 'askr_fastcgi_queue_length',
    help: 'Requests waiting for a FastCGI connection.',
    registers,
    collect: () => {
      queueLength.set(sources.pool?.().queued ?? 0);
    },
  });
  const stalls = new Counter({
    name: 'askr_fastcgi_stalls_total',
    help: 'Requests on a fresh kept connection that got nothing from php-fpm for 200 ms while other kept connections existed (FPM probably had not accepted it).',
    registers,
  });
  const workersFreed = new Counter({
    name: 'askr_fastcgi_workers_freed_total',
    help: 'Kept FastCGI connections closed to free the FPM worker they pinned for a stalled request.',
    registers,
  });
  const bufferMemory: Gauge = new Gauge({
    name: 'askr_buffer_memory_bytes',
    help: 'Memory held by buffered request bodies and PHP responses (bounded by server.buffer_memory_limit).',
    registers,
    collect: () => {
      bufferMemory.set(sources.buffers?.().usedBytes ?? 0);
    },
  });
  const bufferTempFiles = new Counter({
    name: 'askr_buffer_temp_files_total',
    help: 'Request bodies and PHP responses that went to a temp file, by kind.',
    labelNames: ['kind'] as const,
    registers,
  });
  const clientTimeouts = new Counter({
    name: 'askr_http_client_timeouts_total',
    help: 'Clients closed for being too slow: a request body stalled (body, 408) or the response was not read (send).',
    labelNames: ['kind'] as const,
    registers,
  });
  const busUp = new Gauge({
    name: 'askr_cluster_bus_up',
    help: '1 while the Redis cluster bus is connected (0 down; absent on a single node).',
    registers: [],
  });
  const busPublished = new Counter({
    name: 'askr_cluster_published_total',
    help: 'Events this node sent to the cluster bus.',
    registers: [],
  });
  const busReceived = new Counter({
    name: 'askr_cluster_received_total',
    help: 'Events this node received from the cluster bus (its own included).',
    registers: [],
  });
  const busLag = new Histogram({
    name: 'askr_cluster_lag_seconds',
    help: 'Time from a publish reaching Redis until this node received it.',
    buckets: LAG_BUCKETS,
    registers: [],
  });
  const busErrors = new Counter({
    name: 'askr_cluster_errors_total',
    help: 'Failed Redis commands and connection errors of the cluster bus.',
    registers: [],
  });
  const busReconnects = new Counter({
    name: 'askr_cluster_reconnects_total',
    help: 'Times the cluster bus came back after Redis was lost.',
    registers: [],
  });
  const busLocalOnly = new Counter({
    name: 'askr_cluster_local_only_total',
    help: 'Publishes delivered on this node only because the cluster bus was down.',
    registers: [],
  });
  const clusterMetrics: Array<[string, Gauge | Counter | Histogram]> = [
    ['askr_cluster_bus_up', busUp],
    ['askr_cluster_published_total', busPublished],
    ['askr_cluster_received_total', busReceived],
    ['askr_cluster_lag_seconds', busLag],
    ['askr_cluster_errors_total', busErrors],
    ['askr_cluster_reconnects_total', busReconnects],
    ['askr_cluster_local_only_total', busLocalOnly],
  ];
  const queueWait = new Histogram({
    name: 'askr_fastcgi_queue_wait_seconds',
    help: 'Time a request waited for a FastCGI connection (0 when one was free).',
    buckets: QUEUE_BUCKETS,
    registers,
  });
  const connectErrors = new Counter({
    name: 'askr_fastcgi_connect_errors_total',
    help: 'Failed connects to php-fpm (refused, missing socket); timeouts are in askr_fastcgi_timeouts_total.',
    registers,
  });
  const timeouts = new Counter({
    name: 'askr_fastcgi_timeouts_total',
    help: 'FastCGI timeouts by phase.',
    labelNames: ['kind'] as const,
    registers,
  });
  const retries = new Counter({
    name: 'askr_fastcgi_retries_total',
    help: 'Requests replayed on a fresh connection because a pooled one was dead.',
    registers,
  });
  const upstream = new Histogram({
    name: 'askr_fastcgi_upstream_duration_seconds',
    help: 'Time from sending a request to php-fpm until the response head arrived.',
    buckets: LATENCY_BUCKETS,
    registers,
  });

  // --- Open-file cache (static.open_file_cache) ---
  // The cache counts in plain integers (no prom-client call on the hot path); the counters below
  // take the difference at scrape time. `seen` remembers, per cache object, what was already added.
  const seen = new WeakMap<object, OpenFileCacheStats>();
  const fileCacheEvents = new Counter({
    name: 'askr_static_file_cache_events_total',
    help: 'Open-file cache lookups and maintenance: hit (answered from memory within static.open_file_cache_valid), miss, revalidation (stat again after the validity), read (a small file read into memory), eviction (count or byte bound), watch_invalidation (dropped on an fs.watch event), watch_failure (no watch: validity alone).',
    labelNames: ['event'] as const,
    registers,
    collect: () => {
      const cache = sources.fileCache?.() ?? null;
      if (cache === null) return;
      const now = cache.stats();
      const before = seen.get(cache);
      seen.set(cache, now);
      const add = (event: string, key: keyof OpenFileCacheStats): void => {
        const delta = now[key] - (before?.[key] ?? 0);
        if (delta > 0) fileCacheEvents.inc({ event }, delta);
      };
      add('hit', 'hits');
      add('miss', 'misses');
      add('revalidation', 'revalidations');
      add('read', 'reads');
      add('eviction', 'evictions');
      add('watch_invalidation', 'watchInvalidations');
      add('watch_failure', 'watchFailures');
    },
  });
  const fileCacheEntries: Gauge = new Gauge({
    name: 'askr_static_file_cache_entries',
    help: 'Paths held by the open-file cache (0 when static.open_file_cache is off).',
    registers,
    collect: () => {
      const cache = sources.fileCache?.() ?? null;
      fileCacheEntries.set(cache?.stats().entries ?? 0);
    },
  });
  const fileCacheBytes: Gauge = new Gauge({
    name: 'askr_static_file_cache_bytes',
    help: "Small files' bytes held by the open-file cache (bounded by static.open_file_cache_max_bytes).",
    registers,
    collect: () => {
      const cache = sources.fileCache?.() ?? null;
      fileCacheBytes.set(cache?.stats().bytes ?? 0);
    },
  });

  // --- SSE / hub ---
  const sseConnections = new Gauge({
    name: 'askr_sse_connections',
    help: 'Open streams by kind (passthrough streams pin a PHP worker).',
    labelNames: ['kind'] as const,
    registers,
    collect: () => {
      const s = sources.hub?.();
      sseConnections.set({ kind: 'hold' }, s?.byKind.hold ?? 0);
      sseConnections.set({ kind: 'events' }, s?.byKind.events ?? 0);
      sseConnections.set({ kind: 'mercure' }, s?.byKind.mercure ?? 0);
      sseConnections.set({ kind: 'passthrough' }, passthroughOpen);
    },
  });
  const sseChannels: Gauge = new Gauge({
    name: 'askr_sse_channels',
    help: 'Channels with at least one subscriber or a history.',
    registers,
    collect: () => {
      sseChannels.set(sources.hub?.().channels ?? 0);
    },
  });
  const published = new Counter({
    name: 'askr_events_published_total',
    help: 'Publishes accepted by the hub (one per publish, whatever the number of channels), by ingress.',
    labelNames: ['ingress'] as const,
    registers,
  });
  const delivered = new Counter({
    name: 'askr_events_delivered_total',
    help: 'Event writes to subscribers (one per stream per event).',
    registers,
  });
  const deliveryLag = new Histogram({
    name: 'askr_delivery_lag_seconds',
    help: 'Time from a publish reaching the hub until it was written to every subscriber.',
    buckets: LAG_BUCKETS,
    registers,
  });
  const slowConsumers = new Counter({
    name: 'askr_sse_slow_consumer_disconnects_total',
    help: 'Streams disconnected because their queue exceeded sse.subscriber_queue_size.',
    registers,
  });
  const replayed = new Counter({
    name: 'askr_sse_replay_events_total',
    help: 'Events replayed to reconnecting streams from history.',
    registers,
  });
  const lost = new Counter({
    name: 'askr_sse_lost_total',
    help: 'Reconnects whose gap could not be replayed (askr:lost sent), by reason.',
    labelNames: ['reason'] as const,
    registers,
  });

  // --- GRIP publishing (Pushpin's API) ---
  const gripItems = new Counter({
    name: 'askr_grip_items_total',
    help: 'Items published through the Pushpin-compatible API, by outcome: sent, reordered (after the item its prev-id names), expired (grip.message_wait passed without it), duplicate (id seen within grip.id_cache_ttl), dropped (a waiting bound), noop (hint/refresh).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const gripIgnored = new Counter({
    name: 'askr_grip_ignored_total',
    help: 'Parts of GRIP publish items the sidecar does not carry and ignored, by format (http-response, ws-message, content-filters).',
    labelNames: ['format'] as const,
    registers,
  });

  // --- ingress and FPM ---
  const rejectedDatagrams = new Counter({
    name: 'askr_rejected_datagrams_total',
    help: 'Datagrams rejected by the ingress, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const fpmRestarts = new Counter({
    name: 'askr_fpm_restarts_total',
    help: 'Restarts of the managed php-fpm by the supervisor.',
    registers,
  });

  // Every fixed label value exists from the start, so rate() and absent() work before the first event.
  for (const kind of REQUEST_KINDS)
    for (const cls of STATUS_CLASSES) requests.inc({ kind, status_class: cls }, 0);
  for (const reason of REQUEST_REJECT_REASONS) rejectedRequests.inc({ reason }, 0);
  for (const reason of DATAGRAM_REJECT_REASONS) rejectedDatagrams.inc({ reason }, 0);
  for (const kind of TIMEOUT_KINDS) timeouts.inc({ kind }, 0);
  for (const kind of ['request', 'response'] as const) bufferTempFiles.inc({ kind }, 0);
  for (const kind of ['body', 'send'] as const) clientTimeouts.inc({ kind }, 0);
  for (const ingress of INGRESS_KINDS) published.inc({ ingress }, 0);
  for (const reason of LOST_REASONS) lost.inc({ reason }, 0);
  for (const outcome of GRIP_OUTCOMES) gripItems.inc({ outcome }, 0);
  for (const format of IGNORED_FORMATS) gripIgnored.inc({ format }, 0);

  const onRequestDone = (kind: RouteKind, status: number, durationMs: number): void => {
    // A runtime guard too: a label value outside the set would be an unbounded series.
    const k = pick(REQUEST_KINDS, kind, 'error');
    requests.inc({ kind: k, status_class: statusClass(status) });
    // A held stream lasts hours: it would drown the latency distribution, so it has its own.
    if (k === 'sse') streamDuration.observe(durationMs / 1000);
    else requestDuration.observe({ kind: k }, durationMs / 1000);
  };
  const onRejected = (reason: string): void => {
    rejectedRequests.inc({ reason: pick(REQUEST_REJECT_REASONS, reason, 'other') });
  };
  const observeUpstream = (ms: number): void => {
    if (Number.isFinite(ms) && ms >= 0) upstream.observe(ms / 1000);
  };

  return {
    registry,
    poolHooks: () => ({
      onConnectError: () => connectErrors.inc(),
      onRetry: () => retries.inc(),
      onTimeout: (kind) => timeouts.inc({ kind: pick(TIMEOUT_KINDS, kind, 'read') }),
      onQueueWait: (waitMs) => queueWait.observe(waitMs / 1000),
      onStall: () => stalls.inc(),
      onWorkersFreed: (count) => workersFreed.inc(count),
    }),
    clusterHooks: () => {
      // Registered only when a cluster is configured: a single node shows no cluster series.
      for (const [name, metric] of clusterMetrics) {
        if (registry.getSingleMetric(name) === undefined) registry.registerMetric(metric);
      }
      return {
        onBusState: (up) => busUp.set(up ? 1 : 0),
        onBusPublish: () => busPublished.inc(),
        onBusReceive: (lagMs) => {
          busReceived.inc();
          if (lagMs >= 0) busLag.observe(lagMs / 1000);
        },
        onBusError: () => busErrors.inc(),
        onReconnect: () => busReconnects.inc(),
        onLocalOnly: () => busLocalOnly.inc(),
      };
    },
    phpHooks: () => ({
      onTempFile: (kind) => bufferTempFiles.inc({ kind }),
      onClientTimeout: (kind) => clientTimeouts.inc({ kind }),
    }),
    hubHooks: () => ({
      onPublish: (ingress) => published.inc({ ingress: pick(INGRESS_KINDS, ingress, 'internal') }),
      onDeliver: (count, lagMs) => {
        if (count <= 0) return; // no subscriber: nothing was written, no lag to speak of
        delivered.inc(count);
        deliveryLag.observe(lagMs / 1000);
      },
      onSlowConsumer: () => slowConsumers.inc(),
      onReplay: (events) => {
        if (events > 0) replayed.inc(events);
      },
      onLost: (reason) => lost.inc({ reason: pick(LOST_REASONS, reason, 'unknown_id') }),
    }),
    httpHooks: () => ({
      onConnection: (socket) => {
        clientConnectionsAccepted.inc();
        clientConnectionsOpen += 1;
        socket.once('close', () => {
          clientConnectionsOpen -= 1;
        });
      },
      onRequestDone: (ctx, status, durationMs) => {
        onRequestDone(ctx.kind, status, durationMs);
        if (ctx.upstreamMs !== null) observeUpstream(ctx.upstreamMs);
      },
      onRejected,
    }),
    onRequestDone,
    onRejected,
    onMercurePatternAborted: () => mercurePatternAborts.inc(),
    onMercureCache: (cache, outcome) => mercureCache.inc({ cache, outcome }),
    gripHooks: () => ({
      onItem: (outcome) => gripItems.inc({ outcome: pick(GRIP_OUTCOMES, outcome, 'sent') }),
      onIgnored: (format) =>
        gripIgnored.inc({ format: pick(IGNORED_FORMATS, format, 'ws-message') }),
    }),
    onDatagramReject: (reason) => {
      rejectedDatagrams.inc({ reason: pick(DATAGRAM_REJECT_REASONS, reason, 'other') });
    },
    onFpmRestart: () => fpmRestarts.inc(),
    observeUpstream,
    passthrough: (delta) => {
      passthroughOpen = Math.max(0, passthroughOpen + delta);
    },
    bindSources: (next) => {
      sources = { ...sources, ...next };
    },
  };
}
