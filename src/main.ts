/**
 * Wiring only: config -> logger -> (managed php-fpm) -> FastCGI pool -> HTTP server -> signals.
 * `startSidecar` is what the CLI and the integration tests call; it owns every resource it starts
 * and `close()` releases them in reverse order.
 */
import { realpathSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { schema, type SidecarConfig } from './config/schema.ts';
import { ConfigError, toError } from './errors.ts';
import { FcgiPool, STALL_MS, type FcgiPoolHooks } from './fastcgi/pool.ts';
import { MemoryBudget } from './cgi/spool.ts';
import type { PhpHandlerHooks } from './http/php-handler.ts';
import { RateLimitedLog } from './observability/rate-limited-log.ts';
import { registerLogMetrics, type LogOutput } from './observability/logger.ts';
import { planPool, type PoolPlan } from './fastcgi/pool-plan.ts';
import { startManagedFpm, type ManagedFpm } from './fpm/managed-fpm.ts';
import { openFileCacheFor } from './http/open-file-cache.ts';
import { createHttpServer, type HttpServer } from './http/server.ts';
import { parseTrustedProxies, type ProxyTrust } from './http/trusted-proxies.ts';
import { VERSION } from './version.ts';
import { Hub, type PublishFn, type SharedHistoryFn } from './sse/hub.ts';
import { loadHubState, saveHubState } from './sse/hub-state.ts';
import { PresenceRegistry, type Presence } from './sse/presence.ts';
import { ClusterPresence } from './cluster/cluster-presence.ts';
import { ClusterNode } from './cluster/cluster-node.ts';
import { NodeLiveness } from './cluster/node-liveness.ts';
import { ClusterSubscriptions } from './cluster/cluster-subscriptions.ts';
import { LocalBus, type EventBus } from './sse/event-bus.ts';
import { defaultNodeId } from './cluster/redis-bus.ts';
import { createEventsRoute } from './sse/events-endpoint.ts';
import { createAuthBatchRoute } from './sse/auth-batch.ts';
import { randomGrantSecret } from './sse/grants.ts';
import { createWhisperRoute } from './sse/whisper.ts';
import { createHoldInterceptor } from './sse/hold-interceptor.ts';
import { createPublishRoute } from './broadcast/http-publish.ts';
import { GripAuth } from './broadcast/grip-auth.ts';
import { createPushpinPublish, PUBLISH_PATHS } from './broadcast/pushpin-publish.ts';
import { usableSocketPath } from './broadcast/socket-path.ts';
import {
  ingressSettings,
  startDatagramIngress,
  type DatagramIngress,
} from './broadcast/datagram-ingress.ts';
import type { ExtraRoute } from './http/server.ts';
import { createUpstreamProxy } from './http/upstream-proxy.ts';
import { Registry } from 'prom-client';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { startFpmStatusPoller } from './observability/fpm-status.ts';
import { fpmReachable, startAdminServer, unixSocketPresent } from './observability/admin-server.ts';
import { statusPageRoutes, type StatusSnapshot } from './observability/status-page.ts';
import { TokenVerifier } from './mercure/token.ts';
import type { TopicMatcher } from './mercure/matchers.ts';
import { SubscriptionRegistry } from './mercure/subscriptions.ts';
import { createMercureRoutes, tokenSettingsOf } from './mercure/mercure-route.ts';

export interface Sidecar {
  /** "http://127.0.0.1:PORT" (or the unix path) the server listens on. */
  readonly url: string;
  readonly port: number;
  readonly pool: FcgiPool;
  readonly http: HttpServer;
  readonly fpm: ManagedFpm | null;
  readonly hub: Hub;
  readonly ingress: DatagramIngress | null;
  readonly registry: Registry;
  /** URL of the metrics listener, or null when metrics.enabled is false. */
  readonly adminUrl: string | null;
  /** Drain (bounded by server.shutdown_timeout) and release everything. */
  close(): Promise<void>;
  /** Applies a re-read config (SIGHUP); returns the keys that need a restart to change. */
  reload(next: SidecarConfig): string[];
}

/** pm.status_path of the managed pool: not a path a PHP app serves. */
const MANAGED_STATUS_PATH = '/askr-fpm-status';

export interface StartOptions {
  /** Called when the managed php-fpm was restarted by the supervisor. */
  onFpmRestart?(): void;
  /** The logger's batched output, whose dropped lines become askr_log_dropped_lines_total. */
  logOutput?: LogOutput;
}

export async function startSidecar(
  initial: SidecarConfig,
  logger: Logger,
  options: StartOptions = {},
): Promise<Sidecar> {
  let config = initial;
  try {
    config.server.root = realpathSync(config.server.root);
  } catch (err) {
    throw new ConfigError(
      `server.root = ${JSON.stringify(config.server.root)}: the document root does not exist`,
      { cause: err },
    );
  }
  let trust: ProxyTrust = parseTrustedProxies(config.server.trusted_proxies);

  // Validated first: a bad [proxy] route stops the start before anything is spawned.
  const upstreamProxy = createUpstreamProxy({
    routes: config.proxy.routes,
    connectTimeoutMs: config.proxy.connect_timeout,
    timeoutMs: config.proxy.timeout,
    logger,
  });
  // [grip] keys too: a bad one stops the start here, naming the key.
  let gripAuth = new GripAuth(config.grip);
  config.broadcast.socket = await usableSocketPath(config.broadcast.socket, logger);
  const registry = new Registry();
  const metrics = createMetrics(registry);
  if (options.logOutput !== undefined) registerLogMetrics(registry, options.logOutput);

  let fpm: ManagedFpm | null = null;
  let address = config.fastcgi.address;
  // The managed pool always has a status page; an external FPM only when configured.
  const statusPath =
    address === '' && config.fpm.status_path === '' ? MANAGED_STATUS_PATH : config.fpm.status_path;
  if (address === '') {
    const runDir = await mkdtemp(join(tmpdir(), 'askr-fpm-'));
    fpm = await startManagedFpm({
      binary: config.fpm.binary,
      runDir,
      maxChildren: config.fpm.max_children,
      maxRequests: config.fpm.max_requests,
      requestTerminateTimeoutMs: config.fpm.request_terminate_timeout,
      ini: config.fpm.ini,
      // The PHP shim finds the datagram socket through ASKR_SOCKET (CLI scripts run by PHP too).
      env:
        config.broadcast.socket === ''
          ? config.fpm.env
          : { ASKR_SOCKET: config.broadcast.socket, ...config.fpm.env },
      restartBackoffMaxMs: config.fpm.restart_backoff_max,
      logger,
      statusPath,
      onRestart: () => {
        metrics.onFpmRestart();
        options.onFpmRestart?.();
      },
    });
    address = fpm.address;
    logger.info(
      { address, fpmPid: fpm.pid(), maxChildren: config.fpm.max_children },
      'using the managed php-fpm',
    );
  }

  const managedMaxChildren = fpm ? config.fpm.max_children : null;
  const poolPlanFor = (c: SidecarConfig): PoolPlan =>
    planPool({
      keepAlive: c.fastcgi.keep_alive,
      poolSize: c.fastcgi.pool_size,
      managedMaxChildren,
    });
  const plan = poolPlanFor(config);
  logger.info(
    {
      address,
      keepAlive: plan.keepAlive,
      maxConnections: plan.maxConnections,
      idleTimeoutMs: plan.keepAlive ? config.fastcgi.idle_timeout : null,
    },
    `FastCGI pool: ${plan.keepAlive ? 'keep-alive' : 'a connection per request'}, at most ${plan.maxConnections} connections, because ${plan.reason}`,
  );
  const pool = new FcgiPool({
    address,
    keepAlive: plan.keepAlive,
    maxConnections: plan.maxConnections,
    queueSize: config.fastcgi.queue_size,
    queueTimeoutMs: config.fastcgi.queue_timeout,
    connectTimeoutMs: config.fastcgi.connect_timeout,
    idleTimeoutMs: config.fastcgi.idle_timeout,
    hooks: poolHooks(metrics, logger),
  });
  const budget = new MemoryBudget(config.server.buffer_memory_limit);
  metrics.bindSources({
    buffers: () => ({ usedBytes: budget.usedBytes, limitBytes: budget.limitBytes }),
  });

  const savedState =
    config.sse.state_file === '' ? null : await loadHubState(config.sse.state_file, logger);
  const hub = new Hub({
    ...(savedState === null ? {} : { state: savedState }),
    historySize: config.sse.history_size,
    historyMaxAgeMs: config.sse.history_max_age,
    subscriberQueueBytes: config.sse.subscriber_queue_size,
    heartbeatIntervalMs: config.sse.heartbeat_interval,
    maxLifetimeMs: config.sse.max_lifetime,
    idleTimeoutMs: config.sse.idle_timeout,
    retryMs: config.sse.retry,
    maxConnections: config.sse.max_connections,
    maxConnectionsPerIp: config.sse.max_connections_per_ip,
    logger,
    hooks: metrics.hubHooks(),
  });
  metrics.bindSources({ pool: () => pool.stats(), hub: () => hub.stats() });

  // Several sidecars: every publish goes through Redis and comes back numbered in cluster order.
  const cluster =
    config.cluster.redis_url === ''
      ? null
      : new ClusterNode({
          url: config.cluster.redis_url,
          keyPrefix: config.cluster.key_prefix,
          nodeId: config.cluster.node_id === '' ? defaultNodeId() : config.cluster.node_id,
          hub,
          historySize: () => config.sse.history_size,
          historyMaxAgeMs: () => config.sse.history_max_age,
          logger,
          hooks: metrics.clusterHooks(),
        });
  if (cluster !== null) {
    if (savedState !== null) {
      logger.warn('sse.state_file is ignored in a cluster: history and ids live in Redis');
    }
    await cluster.start();
  }
  const bus: EventBus = cluster ?? new LocalBus(hub);
  const publish: PublishFn = (input) => bus.publish(input);
  const sharedHistory: SharedHistoryFn = (channels, lastEventId) =>
    bus.sharedHistory(channels, lastEventId);

  // Started after php-fpm: the socket library cannot set FD_CLOEXEC, so children spawned later
  // inherit it (see datagram-ingress.ts).
  let ingress: DatagramIngress | null = null;
  if (config.broadcast.socket !== '') {
    ingress = await startDatagramIngress({
      path: config.broadcast.socket,
      ...ingressSettings(config),
      logger,
      onReject: (reason) => metrics.onDatagramReject(reason),
      onMessage: (m) => {
        publish({
          channels: m.channels,
          data: m.data,
          ...(m.event === undefined ? {} : { event: m.event }),
          ...(m.id === undefined ? {} : { publisherId: m.id }),
          ...(m.socket === undefined ? {} : { socket: m.socket }),
          close: m.close,
          ingress: 'datagram',
        }).catch((err: unknown) => {
          logger.warn({ err: (err as Error).message }, 'datagram publish failed');
        });
      },
    });
  }

  const serverInfo = {
    documentRoot: config.server.root,
    serverName: config.server.server_name,
    pathInfo:
      config.server.recipe === 'symfony'
        ? ('never' as const)
        : config.server.recipe === 'generic'
          ? ('translated' as const)
          : ('always' as const),
    serverSoftware:
      config.server.software !== ''
        ? config.server.software
        : config.server.recipe === 'wordpress'
          ? // WordPress enables pretty permalinks only for a server it knows ($is_nginx).
            `nginx (askr-sidecar/${VERSION})`
          : `askr-sidecar/${VERSION}`,
  };
  const routes = (): ReadonlyMap<string, ExtraRoute> => {
    const c = config;
    return new Map<string, ExtraRoute>([
      [c.sse.events_path, eventsRoute],
      [c.sse.publish_path, publishRoute],
      [c.sse.auth_batch_path, authBatchRoute],
      [c.sse.whisper_path, whisperRoute],
      ...(c.mercure.enabled ? mercure.exact : []),
    ]);
  };
  let presence: Presence;
  let clusterPresence: ClusterPresence | null = null;
  // One liveness key per node and one heartbeat: presence and the Mercure mirror sweep on it.
  let liveness: NodeLiveness | null = null;
  if (cluster === null) {
    presence = new PresenceRegistry(hub, publish);
  } else {
    liveness = new NodeLiveness({
      bus: cluster.bus,
      nodeId: cluster.nodeId,
      ttlMs: config.cluster.presence_ttl,
      logger,
    });
    clusterPresence = new ClusterPresence({
      bus: cluster.bus,
      hub,
      publish,
      keyPrefix: config.cluster.key_prefix,
      nodeId: cluster.nodeId,
      ttlMs: config.cluster.presence_ttl,
      logger,
      liveness,
    });
    const observed = clusterPresence;
    presence = observed;
  }
  // Mercure: keys are imported now (a bad key stops the start with its config key named).
  const patternAbortLog = new RateLimitedLog(logger, 'warn');
  const onPatternAborted = (matcher: TopicMatcher): void => {
    metrics.onMercurePatternAborted();
    patternAbortLog.log(
      { pattern: matcher.pattern.slice(0, 256) },
      'mercure: a URL pattern hit its evaluation time limit and now matches nothing',
    );
  };
  const mercureCacheHooks = {
    onTokenCache: (outcome: 'hit' | 'miss' | 'evict') => metrics.onMercureCache('token', outcome),
    onPatternCache: (outcome: 'hit' | 'miss' | 'evict') =>
      metrics.onMercureCache('pattern', outcome),
  };
  let verifier = await TokenVerifier.create(
    tokenSettingsOf(config, onPatternAborted, mercureCacheHooks),
  );
  const mercureRegistry = new SubscriptionRegistry({
    hubPath: () => config.mercure.path,
    publish,
    logger,
    ...(cluster === null ? {} : { nodeId: cluster.nodeId }),
  });
  let mercureMirror: ClusterSubscriptions | null = null;
  if (cluster !== null) {
    const observedPresence = clusterPresence;
    cluster.observer = (event) => {
      observedPresence?.observe(event);
      mercureRegistry.observe(event);
    };
    // The registry's own subscriptions kept in Redis: listed by nodes that start later, ended
    // (active: false) by a live node when this one dies.
    if (liveness !== null && config.mercure.enabled && config.mercure.subscriptions) {
      const mirror = new ClusterSubscriptions({
        bus: cluster.bus,
        keyPrefix: config.cluster.key_prefix,
        liveness,
        registry: mercureRegistry,
        logger,
      });
      cluster.onBusUp = () => mirror.resume();
      mercureMirror = mirror;
    }
  }
  const mercure = createMercureRoutes({
    hub,
    publish,
    sharedHistory,
    config: () => config,
    verifier: () => verifier,
    registry: mercureRegistry,
    onRejected: (reason) => metrics.onRejected(reason),
    onPatternAborted,
  });
  // Grants (POST /askr/auth): without sse.grant_secret they are signed with a per-process secret.
  const fallbackGrantSecret = randomGrantSecret();
  const grantSecret = (): Buffer | string =>
    config.sse.grant_secret === '' ? fallbackGrantSecret : config.sse.grant_secret;
  if (config.sse.grant_secret === '') {
    logger.warn(
      { key: 'sse.grant_secret' },
      'grants do not survive a restart and are not valid on other cluster nodes: set sse.grant_secret',
    );
  } else if (config.sse.grant_secret.length < 32) {
    logger.warn(
      { key: 'sse.grant_secret' },
      'sse.grant_secret is short: use 32+ random characters',
    );
  }
  const eventsRoute = createEventsRoute({
    hub,
    sharedHistory,
    presence,
    pool,
    config: () => config,
    serverInfo,
    grantSecret,
    onRejected: (reason) => metrics.onRejected(reason),
  });
  const authBatchRoute = createAuthBatchRoute({
    pool,
    config: () => config,
    serverInfo,
    grantSecret,
    onRejected: (reason) => metrics.onRejected(reason),
  });
  const whisperRoute = createWhisperRoute({
    hub,
    publish,
    config: () => config,
    grantSecret,
    onRejected: (reason) => metrics.onRejected(reason),
  });
  const publishRoute = createPublishRoute({
    hub,
    publish,
    config: () => config,
    onRejected: (reason) => metrics.onRejected(reason),
  });
  let routeMap = routes();

  // Replaced on reload: cached answers never outlive the config that allowed them.
  let fileCache = openFileCacheFor(config);
  metrics.bindSources({ fileCache: () => fileCache });
  const http = createHttpServer({
    config: () => config,
    logger,
    trust: () => trust,
    fileCache: () => fileCache,
    ...metrics.httpHooks(),
    upstream: () => upstreamProxy,
    extraRoutes: () => routeMap,
    prefixRoutes: () => (config.mercure.enabled ? [mercure.prefix] : []),
    phpHeaders: () =>
      config.mercure.enabled && config.mercure.discovery
        ? ['Link', `<${config.mercure.path}>; rel="mercure"`]
        : [],
    php: {
      pool,
      config: () => config,
      serverInfo,
      budget,
      hooks: phpHooks(metrics, logger),
      interceptor: createHoldInterceptor({
        hub,
        sharedHistory,
        config: () => config,
        onPassthrough: (delta) => metrics.passthrough(delta),
        onRejected: (reason) => metrics.onRejected(reason),
      }),
    },
  });

  const poller =
    statusPath === ''
      ? null
      : startFpmStatusPoller({
          pool,
          statusPath,
          intervalMs: config.metrics.fpm_status_interval,
          registry,
          logger,
        });
  // Pushpin's publish API lives on the admin listener, as Pushpin's is on its own port.
  const gripPublish = createPushpinPublish({
    publish,
    config: () => config,
    auth: () => gripAuth,
    logger,
    hooks: { ...metrics.gripHooks(), onRejected: (reason) => metrics.onRejected(reason) },
  });
  if (gripAuth.enabled && !config.metrics.enabled) {
    logger.warn(
      { key: 'metrics.enabled' },
      'grip publishing is configured but served on the metrics listener, which is off',
    );
  }
  const admin = config.metrics.enabled
    ? await startAdminServer({
        listen: config.metrics.listen,
        registry,
        logger,
        routes: statusPageRoutes({
          snapshot: () => statusSnapshot(registry, pool, hub, plan.maxConnections),
        }),
        control: Object.fromEntries(PUBLISH_PATHS.map((path) => [path, gripPublish.handle])),
        checks: {
          fpm: () => fpmReachable(address),
          ...(ingress === null ? {} : { datagram_socket: () => unixSocketPresent(ingress.path) }),
        },
        ...(cluster === null
          ? {}
          : { degraded: { cluster: () => Promise.resolve(bus.degraded()) } }),
      })
    : null;

  const { url, port } = await listen(http, config.server.listen);
  logger.info(
    {
      url,
      metrics: admin?.url ?? null,
      root: config.server.root,
      fpm: address,
      poolSize: plan.maxConnections,
    },
    'askr-sidecar listening',
  );
  logger.flush(); // the line orchestrators wait for: not held for the batch interval

  let closing: Promise<void> | null = null;
  return {
    url,
    port,
    pool,
    http,
    fpm,
    hub,
    ingress,
    registry,
    adminUrl: admin?.url ?? null,
    reload(next: SidecarConfig): string[] {
      // Validated before anything is applied: a bad [grip] key keeps the running config.
      const nextGripAuth = new GripAuth(next.grip);
      const needRestart = restartOnlyChanges(config, next);
      gripAuth = nextGripAuth;
      next.server.root = config.server.root;
      trust = parseTrustedProxies(next.server.trusted_proxies);
      config = next;
      logger.level = next.log.level;
      const nextPlan = poolPlanFor(next);
      if (nextPlan.keepAlive !== pool.keepAlive) needRestart.push('fastcgi.keep_alive (mode)');
      pool.reconfigure({
        maxConnections: nextPlan.maxConnections,
        queueSize: next.fastcgi.queue_size,
        queueTimeoutMs: next.fastcgi.queue_timeout,
        connectTimeoutMs: next.fastcgi.connect_timeout,
        idleTimeoutMs: next.fastcgi.idle_timeout,
      });
      http.server.maxConnections = next.server.max_connections;
      budget.limitBytes = next.server.buffer_memory_limit;
      routeMap = routes();
      fileCache?.close();
      fileCache = openFileCacheFor(next);
      // Keys are imported asynchronously: the running ones serve until the new ones are ready.
      TokenVerifier.create(tokenSettingsOf(next, onPatternAborted, mercureCacheHooks)).then(
        (v) => {
          verifier = v;
        },
        (err: unknown) =>
          logger.error(
            { err: toError(err).message },
            'mercure keys not reloaded; keeping the running ones',
          ),
      );
      upstreamProxy.reconfigure(next.proxy.routes, next.proxy.connect_timeout, next.proxy.timeout);
      hub.reconfigure({
        historySize: next.sse.history_size,
        historyMaxAgeMs: next.sse.history_max_age,
        subscriberQueueBytes: next.sse.subscriber_queue_size,
        heartbeatIntervalMs: next.sse.heartbeat_interval,
        maxLifetimeMs: next.sse.max_lifetime,
        idleTimeoutMs: next.sse.idle_timeout,
        retryMs: next.sse.retry,
        maxConnections: next.sse.max_connections,
        maxConnectionsPerIp: next.sse.max_connections_per_ip,
      });
      return needRestart;
    },
    close(): Promise<void> {
      closing ??= (async () => {
        // Streams first: they get a retry: hint and reconnect (to the next instance) with Last-Event-ID.
        const draining = http.drain(config.server.shutdown_timeout);
        // In a cluster this node's members leave now, announced to the other nodes.
        if (clusterPresence !== null) await clusterPresence.leaveAll();
        else presence.close();
        hub.closeAll(config.sse.retry);
        if (config.sse.state_file !== '') {
          await saveHubState(config.sse.state_file, hub.exportState()).catch((err: unknown) => {
            logger.error(
              { err: (err as Error).message, path: config.sse.state_file },
              'cannot write sse.state_file',
            );
          });
        }
        if (ingress) await ingress.close();
        const clean = await draining;
        if (!clean)
          logger.warn(
            { inFlight: http.inFlight() },
            'shutdown timeout: closing remaining connections',
          );
        http.server.closeAllConnections();
        upstreamProxy.close();
        fileCache?.close();
        // The subscription ends of the streams just closed reach Redis and the bus first.
        await mercureMirror?.close();
        await bus.close();
        await pool.close();
        if (fpm) await fpm.stop();
        poller?.stop();
        gripPublish.close();
        // The admin listener goes last, so /readyz keeps answering while the rest drains.
        await admin?.close();
        logger.info('askr-sidecar stopped');
      })();
      return closing;
    },
  };
}

/** Sum of a metric's series, optionally only those whose label matches. */
async function metricSum(
  registry: Registry,
  name: string,
  label?: [string, string],
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => label === undefined || v.labels[label[0]] === label[1])
    .reduce((sum, v) => sum + v.value, 0);
}

/** One status-page sample (src/observability/status-page.ts). */
async function statusSnapshot(
  registry: Registry,
  pool: FcgiPool,
  hub: Hub,
  poolSize: number,
): Promise<StatusSnapshot> {
  const poolStats = pool.stats();
  const hubStats = hub.stats();
  const fpmUp = await metricSum(registry, 'askr_fpm_status_up');
  return {
    time: Date.now(),
    uptimeSeconds: process.uptime(),
    streams: {
      hold: hubStats.byKind.hold,
      events: hubStats.byKind.events,
      passthrough: await metricSum(registry, 'askr_sse_connections', ['kind', 'passthrough']),
    },
    channels: hubStats.channels,
    publishedTotal: await metricSum(registry, 'askr_events_published_total'),
    deliveredTotal: await metricSum(registry, 'askr_events_delivered_total'),
    requestsTotal: await metricSum(registry, 'askr_http_requests_total'),
    pool: { ...poolStats, max: poolSize },
    fpm:
      fpmUp === 0
        ? null
        : {
            active: await metricSum(registry, 'askr_fpm_processes', ['state', 'active']),
            idle: await metricSum(registry, 'askr_fpm_processes', ['state', 'idle']),
            total: await metricSum(registry, 'askr_fpm_processes', ['state', 'total']),
            listenQueue: await metricSum(registry, 'askr_fpm_listen_queue'),
            maxChildrenReached: await metricSum(registry, 'askr_fpm_max_children_reached'),
          },
  };
}

/** Keys marked `restart` in the schema whose value differs between two configs. */
function restartOnlyChanges(a: SidecarConfig, b: SidecarConfig): string[] {
  const out: string[] = [];
  for (const [section, fields] of Object.entries(schema)) {
    for (const [key, field] of Object.entries(fields as Record<string, { restart?: boolean }>)) {
      if (field.restart !== true) continue;
      const av = (a as unknown as Record<string, Record<string, unknown>>)[section]?.[key];
      const bv = (b as unknown as Record<string, Record<string, unknown>>)[section]?.[key];
      if (JSON.stringify(av) !== JSON.stringify(bv) && !(section === 'server' && key === 'root'))
        out.push(`${section}.${key}`);
    }
  }
  return out;
}

async function listen(http: HttpServer, address: string): Promise<{ url: string; port: number }> {
  const server = http.server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (address.startsWith('unix:')) {
      server.listen(address.slice(5), () => resolve());
    } else {
      const idx = address.lastIndexOf(':');
      const host = address.slice(0, idx).replace(/^\[|\]$/g, '') || '0.0.0.0';
      server.listen(Number(address.slice(idx + 1)), host, () => resolve());
    }
  });
  const info = server.address();
  if (typeof info === 'string' || info === null)
    return { url: `unix:${address.slice(5)}`, port: 0 };
  const a = info;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return { url: `http://${host}:${a.port}`, port: a.port };
}

/** Pool metrics, plus a rate-limited warning when FPM leaves our connections unaccepted. */
function poolHooks(metrics: Metrics, logger: Logger): FcgiPoolHooks {
  const hooks = metrics.poolHooks();
  const stallLog = new RateLimitedLog(logger, 'warn', 60_000);
  return {
    ...hooks,
    onStall: (open, stalled) => {
      hooks.onStall?.(open, stalled);
      stallLog.log(
        { open, stalled, stallMs: STALL_MS },
        `FastCGI: ${stalled} of ${open} kept connections got nothing from php-fpm for ${STALL_MS} ms; closing idle ones to free workers. The pool probably has about ${Math.max(1, open - stalled)} workers for this sidecar: set fastcgi.pool_size to that (or keep_alive = "off")`,
      );
    },
  };
}

/** Buffering metrics, plus rate-limited lines for clients closed by a timeout. */
function phpHooks(metrics: Metrics, logger: Logger): Required<PhpHandlerHooks> {
  const hooks = metrics.phpHooks();
  const timeoutLog = new RateLimitedLog(logger, 'info', 10_000);
  return {
    onTempFile: hooks.onTempFile,
    onClientTimeout: (kind) => {
      hooks.onClientTimeout(kind);
      timeoutLog.log(
        { kind },
        kind === 'body'
          ? 'client closed: its request body stalled (server.body_timeout, 408)'
          : 'client closed: it stopped reading the response (server.send_timeout)',
      );
    },
  };
}
