/**
 * Wiring only: config -> metrics -> (managed php-fpm) -> FastCGI pool -> hub -> bus -> datagram
 * ingress -> routes -> HTTP server -> admin listener. Every component's options come from
 * `optionsFrom(config)` (src/reload/), which validates the whole config first and which a reload
 * runs again before it applies anything; each component registers the part of a reload it
 * applies where it is built. `startSidecar` is what the CLI and the integration tests call; it
 * owns every resource it starts and `close()` releases them in reverse order.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { SidecarConfig } from './config/schema.ts';
import { FcgiPool } from './fastcgi/pool.ts';
import { MemoryBudget } from './cgi/spool.ts';
import { startManagedFpm, type ManagedFpm } from './fpm/managed-fpm.ts';
import { createHttpServer, type ExtraRoute, type HttpServer } from './http/server.ts';
import { applyHttpServerOptions } from './http/http-options.ts';
import { listenOn, namingListenKey } from './http/listen.ts';
import { createUpstreamProxy } from './http/upstream-proxy.ts';
import { Hub } from './sse/hub.ts';
import { loadHubState, saveHubState } from './sse/hub-state.ts';
import { createEventsRoute } from './sse/events-endpoint.ts';
import { createAuthBatchRoute } from './sse/auth-batch.ts';
import { randomGrantSecret } from './sse/grants.ts';
import { createWhisperRoute } from './sse/whisper.ts';
import { createHoldInterceptor } from './sse/hold-interceptor.ts';
import { startNodeBus } from './cluster/node-bus.ts';
import { createPublishRoute } from './broadcast/http-publish.ts';
import { createPushpinPublish, PUBLISH_PATHS } from './broadcast/pushpin-publish.ts';
import {
  ingressSettings,
  startDatagramIngress,
  type DatagramIngress,
} from './broadcast/datagram-ingress.ts';
import { createMetrics } from './observability/metrics.ts';
import { registerLogMetrics, type LogOutput } from './observability/logger.ts';
import { openFileCacheFor } from './http/open-file-cache.ts';
import { startFpmStatusPoller } from './observability/fpm-status.ts';
import { fpmReachable, startAdminServer, unixSocketPresent } from './observability/admin-server.ts';
import { statusPageRoutes } from './observability/status-page.ts';
import { statusSources, StatusTally } from './observability/status-sources.ts';
import { StatusHistory } from './observability/status-history.ts';
import { readBuildInfo } from './observability/build-info.ts';
import {
  loggedPatternAborted,
  loggedPhpHooks,
  loggedPoolHooks,
} from './observability/logged-hooks.ts';
import { createMercureRoutes } from './mercure/mercure-route.ts';
import { configWarnings, deriveStartValues, optionsFrom } from './reload/component-options.ts';
import { RunningConfig, type ReloadOutcome } from './reload/running-config.ts';

export type { ReloadOutcome } from './reload/running-config.ts';

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
  /**
   * Applies a re-read config (SIGHUP) all or nothing: validates it whole, then applies every
   * reloadable key; keys that need a restart keep their running value. `next` may be a function
   * that reads it (its error is reported like any other). Logs the outcome; never rejects.
   */
  reload(next: SidecarConfig | (() => SidecarConfig)): Promise<ReloadOutcome>;
}

/** pm.status_path of the managed pool: not a path a PHP app serves. */
const MANAGED_STATUS_PATH = '/askr-fpm-status';

export interface StartOptions {
  /** Called when the managed php-fpm was restarted by the supervisor. */
  onFpmRestart?(): void;
  /** The status page's sample interval, ms (default 5000; tests shorten it). */
  statusSampleMs?: number;
  /** The logger's batched output, whose dropped lines become askr_log_dropped_lines_total. */
  logOutput?: LogOutput;
}

export async function startSidecar(
  initial: SidecarConfig,
  logger: Logger,
  options: StartOptions = {},
): Promise<Sidecar> {
  // What the file said, before start-up resolves the root and picks the socket's fallback: a
  // reload reports a restart key only when the file says something else than it said then.
  const configuredAtStart = structuredClone(initial);
  const config = initial;
  await deriveStartValues(config, logger);
  const registry = new Registry();
  const metrics = createMetrics(registry);
  const tally = new StatusTally();
  if (options.logOutput !== undefined) registerLogMetrics(registry, options.logOutput);
  const context = {
    onPatternAborted: loggedPatternAborted(metrics, logger),
    mercureCache: {
      onTokenCache: (outcome: 'hit' | 'miss' | 'evict') => metrics.onMercureCache('token', outcome),
      onPatternCache: (outcome: 'hit' | 'miss' | 'evict') =>
        metrics.onMercureCache('pattern', outcome),
    },
  };
  // Validated whole before anything is spawned: a bad key stops the start, naming the key.
  const running = new RunningConfig({
    initial: await optionsFrom(config, context),
    configuredAtStart,
    prepare: (next) => optionsFrom(next, context),
    logger,
  });
  const start = running.current;
  const live = (): SidecarConfig => running.current.config;
  for (const w of configWarnings(start)) logger.warn({ key: w.key }, w.message);
  running.onApply('log level', (next) => {
    logger.level = next.logLevel;
  });

  const upstreamProxy = createUpstreamProxy({ ...start.upstream, logger });
  running.onApply('proxy', ({ upstream }) =>
    upstreamProxy.reconfigure(upstream.routes, upstream.connectTimeoutMs, upstream.timeoutMs),
  );

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
      user: config.fpm.user,
      group: config.fpm.group,
      documentRoot: config.server.root,
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

  const { plan } = start.pool;
  logger.info(
    {
      address,
      keepAlive: plan.keepAlive,
      maxConnections: plan.maxConnections,
      idleTimeoutMs: plan.keepAlive ? start.pool.tunables.idleTimeoutMs : null,
    },
    `FastCGI pool: ${plan.keepAlive ? 'keep-alive' : 'a connection per request'}, at most ${plan.maxConnections} connections, because ${plan.reason}`,
  );
  const pool = new FcgiPool({
    address,
    keepAlive: plan.keepAlive,
    ...start.pool.tunables,
    hooks: loggedPoolHooks(metrics, logger),
  });
  running.onApply('FastCGI pool', (next) => pool.reconfigure(next.pool.tunables));
  const budget = new MemoryBudget(start.bufferMemoryLimitBytes);
  running.onApply('buffer memory', (next) => {
    budget.limitBytes = next.bufferMemoryLimitBytes;
  });

  const savedState =
    config.sse.state_file === '' ? null : await loadHubState(config.sse.state_file, logger);
  const hub = new Hub({
    ...(savedState === null ? {} : { state: savedState }),
    ...start.hub,
    logger,
    hooks: tally.hubHooks(metrics.hubHooks()),
  });
  running.onApply('hub', (next) => hub.reconfigure(next.hub));
  metrics.bindSources({
    pool: () => pool.stats(),
    hub: () => hub.stats(),
    buffers: () => ({ usedBytes: budget.usedBytes, limitBytes: budget.limitBytes }),
  });

  const node = await startNodeBus({
    config,
    live,
    hub,
    clusterHooks: () => metrics.clusterHooks(),
    restoredState: savedState !== null,
    logger,
  });
  const { bus, publish, sharedHistory } = node;

  // Started after php-fpm: the socket library cannot set FD_CLOEXEC, so children spawned later
  // inherit it (see datagram-ingress.ts).
  let ingress: DatagramIngress | null = null;
  if (config.broadcast.socket !== '') {
    const starting = startDatagramIngress({
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
    const bound = await namingListenKey('broadcast.socket', config.broadcast.socket, starting);
    running.onApply('datagram ingress', (next) => bound.reconfigure(next.ingress));
    ingress = bound;
  }

  // The handlers keep this object and read its fields per request: a reload updates it in place.
  const serverInfo = { ...start.serverInfo };
  running.onApply('server info', (next) => Object.assign(serverInfo, next.serverInfo));

  const onRejected = (reason: string): void => metrics.onRejected(reason);
  const mercure = createMercureRoutes({
    hub,
    publish,
    sharedHistory,
    config: live,
    verifier: () => running.current.verifier,
    registry: node.mercureRegistry,
    onRejected,
    onPatternAborted: context.onPatternAborted,
  });
  // Grants (POST /askr/auth): without sse.grant_secret they are signed with a per-process secret.
  const fallbackGrantSecret = randomGrantSecret();
  const grantSecret = (): Buffer | string =>
    live().sse.grant_secret === '' ? fallbackGrantSecret : live().sse.grant_secret;
  const eventsRoute = createEventsRoute({
    hub,
    sharedHistory,
    presence: node.presence,
    pool,
    config: live,
    serverInfo,
    grantSecret,
    onRejected,
  });
  const authBatchRoute = createAuthBatchRoute({
    pool,
    config: live,
    serverInfo,
    grantSecret,
    onRejected,
  });
  const whisperRoute = createWhisperRoute({ hub, publish, config: live, grantSecret, onRejected });
  const publishRoute = createPublishRoute({ hub, publish, config: live, onRejected });
  const routesOf = (c: SidecarConfig): ReadonlyMap<string, ExtraRoute> =>
    new Map<string, ExtraRoute>([
      [c.sse.events_path, eventsRoute],
      [c.sse.publish_path, publishRoute],
      [c.sse.auth_batch_path, authBatchRoute],
      [c.sse.whisper_path, whisperRoute],
      ...(c.mercure.enabled ? mercure.exact : []),
    ]);
  let routeMap = routesOf(config);
  running.onApply('routes', (next) => {
    routeMap = routesOf(next.config);
  });

  // Replaced on reload: cached answers never outlive the config that allowed them.
  let fileCache = openFileCacheFor(config);
  metrics.bindSources({ fileCache: () => fileCache });
  running.onApply('open-file cache', (next) => {
    fileCache?.close();
    fileCache = openFileCacheFor(next.config);
  });
  const http = createHttpServer({
    config: live,
    logger,
    trust: () => running.current.trust,
    fileCache: () => fileCache,
    ...tally.httpHooks(metrics.httpHooks()),
    upstream: () => upstreamProxy,
    extraRoutes: () => routeMap,
    prefixRoutes: () => (live().mercure.enabled ? [mercure.prefix] : []),
    phpHeaders: () =>
      live().mercure.enabled && live().mercure.discovery
        ? ['Link', `<${live().mercure.path}>; rel="mercure"`]
        : [],
    php: {
      pool,
      config: live,
      serverInfo,
      budget,
      hooks: loggedPhpHooks(metrics, logger),
      interceptor: createHoldInterceptor({
        hub,
        sharedHistory,
        config: live,
        onPassthrough: (delta) => {
          metrics.passthrough(delta);
          tally.passthrough(delta);
        },
        onRejected,
      }),
    },
  });
  applyHttpServerOptions(http.server, start.http);
  running.onApply('HTTP server', (next) => applyHttpServerOptions(http.server, next.http));

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
    config: live,
    auth: () => running.current.gripAuth,
    logger,
    hooks: { ...metrics.gripHooks(), onRejected },
  });
  const sources = statusSources({
    hub,
    pool,
    poolMax: () => running.current.pool.plan.maxConnections,
    tally,
    fpm: poller,
  });
  const history = new StatusHistory({ sources, logger, sampleMs: options.statusSampleMs });
  if (config.metrics.enabled) history.start();
  const admin = config.metrics.enabled
    ? await startAdminServer({
        listen: config.metrics.listen,
        registry,
        logger,
        routes: statusPageRoutes({ sources, history, build: readBuildInfo() }),
        control: Object.fromEntries(PUBLISH_PATHS.map((path) => [path, gripPublish.handle])),
        checks: {
          fpm: () => fpmReachable(address),
          ...(ingress === null ? {} : { datagram_socket: () => unixSocketPresent(ingress.path) }),
        },
        ...(node.clustered ? { degraded: { cluster: () => Promise.resolve(bus.degraded()) } } : {}),
      })
    : null;

  const { url, port } = await listen(http, config.server.listen, logger);
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
    reload: (next) => running.reload(next),
    close(): Promise<void> {
      closing ??= (async () => {
        running.close();
        const now = live();
        // Streams first: they get a retry: hint and reconnect (to the next instance) with Last-Event-ID.
        const draining = http.drain(now.server.shutdown_timeout);
        // In a cluster this node's members leave now, announced to the other nodes.
        await node.leave();
        hub.closeAll(now.sse.retry);
        if (now.sse.state_file !== '') {
          await saveHubState(now.sse.state_file, hub.exportState()).catch((err: unknown) => {
            logger.error(
              { err: (err as Error).message, path: now.sse.state_file },
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
        await node.close();
        await pool.close();
        if (fpm) await fpm.stop();
        poller?.stop();
        history.stop();
        gripPublish.close();
        // The admin listener goes last, so /readyz keeps answering while the rest drains.
        await admin?.close();
        logger.info('askr-sidecar stopped');
      })();
      return closing;
    },
  };
}

async function listen(
  http: HttpServer,
  address: string,
  logger: Logger,
): Promise<{ url: string; port: number }> {
  const server = http.server;
  await listenOn(server, 'server.listen', address, (err) =>
    logger.error({ err }, 'HTTP server error'),
  );
  const info = server.address();
  if (typeof info === 'string' || info === null)
    return { url: `unix:${address.slice(5)}`, port: 0 };
  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return { url: `http://${host}:${info.port}`, port: info.port };
}
