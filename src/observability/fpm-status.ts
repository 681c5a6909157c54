/**
 * Scrapes PHP-FPM's own status page (`pm.status_path`, `?json`) over FastCGI on a timer and mirrors
 * it as askr_fpm_* metrics (docs/metrics.md maps them to php-fpm_exporter's). Invariants: at most
 * one scrape in flight; FPM's cumulative numbers are counters (they restart from 0 with php-fpm,
 * which rate() reads as a counter reset); a failed scrape sets askr_fpm_status_up to 0, counts
 * askr_fpm_status_scrape_errors_total and takes every value series out of the registry until a
 * scrape succeeds again (unknown is absent, never 0); nothing here throws after start; the timer
 * is unref'd. The scrape goes through the pool, so it queues like any request when FPM is saturated.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { ConfigError, toError } from '../errors.ts';
import type { FcgiPool } from '../fastcgi/pool.ts';
import { phpInternalRequest } from '../cgi/php-internal.ts';

export interface FpmStatusPollerOptions {
  pool: FcgiPool;
  /** The pool's pm.status_path, e.g. "/fpm-status". */
  statusPath: string;
  /** Period between the end of one scrape and the start of the next, ms. */
  intervalMs: number;
  registry: Registry;
  logger: Logger;
  /** One scrape's send/read timeout, ms; default min(intervalMs, 5000). */
  timeoutMs?: number;
  /** DOCUMENT_ROOT sent with the scrape (FPM does not read it for the status page); default "/". */
  documentRoot?: string;
}

export interface FpmStatusPoller {
  /** Stops the timer and removes the askr_fpm_* status metrics from the registry. Idempotent. */
  stop(): void;
  /** Why the last scrape failed, or null when it succeeded (or none finished yet). */
  lastError(): string | null;
  /** Scrapes now (or joins the scrape in flight); resolves with lastError(). Never rejects. */
  scrapeNow(): Promise<string | null>;
  /**
   * FPM's figures from the last scrape and when it finished (`at`, ms since the epoch, so a
   * reader can show their age); null when no scrape finished yet or the last one failed
   * (lastError() says why), as the askr_fpm_* series are absent then.
   */
  lastStatus(): { sample: FpmStatus; at: number } | null;
}

/** The fields of FPM's JSON status page the sidecar exposes. */
export interface FpmStatus {
  activeProcesses: number;
  idleProcesses: number;
  totalProcesses: number;
  listenQueue: number;
  maxListenQueue: number;
  maxChildrenReached: number;
  slowRequests: number;
  acceptedConnections: number;
}

const FIELDS: ReadonlyArray<readonly [keyof FpmStatus, string]> = [
  ['activeProcesses', 'active processes'],
  ['idleProcesses', 'idle processes'],
  ['totalProcesses', 'total processes'],
  ['listenQueue', 'listen queue'],
  ['maxListenQueue', 'max listen queue'],
  ['maxChildrenReached', 'max children reached'],
  ['slowRequests', 'slow requests'],
  ['acceptedConnections', 'accepted conn'],
];
/** The JSON page is ~400 bytes; anything near this bound is not FPM's status page. */
const MAX_STATUS_BYTES = 64 * 1024;

/** Parses FPM's `?json` status body; returns an error message when a field is missing or not a number. */
export function parseFpmStatus(body: string): FpmStatus | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (err) {
    return `status page is not JSON (${toError(err).message})`;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'status page JSON is not an object';
  const record = parsed as Record<string, unknown>;
  const out = {} as FpmStatus;
  for (const [field, key] of FIELDS) {
    const value = record[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
      return `status page JSON lacks a non-negative numeric "${key}"`;
    out[field] = value;
  }
  return out;
}

/**
 * Starts polling at once, then every intervalMs. Throws ConfigError for a status path that does
 * not start with "/" or holds control characters, or a non-positive interval; registering the
 * metrics throws if another poller already registered them on this registry.
 */
export function startFpmStatusPoller(options: FpmStatusPollerOptions): FpmStatusPoller {
  const { pool, statusPath, intervalMs, registry, logger } = options;
  if (!/^\/[\x21-\x7e]*$/.test(statusPath))
    throw new ConfigError(
      `FPM status path ${JSON.stringify(statusPath)} must start with "/" and be printable ASCII`,
    );
  if (!Number.isFinite(intervalMs) || intervalMs <= 0)
    throw new ConfigError(`FPM status interval must be a positive number of ms, got ${intervalMs}`);
  const timeoutMs = options.timeoutMs ?? Math.min(intervalMs, 5000);
  const params: ReadonlyArray<readonly [string, string]> = [
    ['REQUEST_METHOD', 'GET'],
    ['SCRIPT_NAME', statusPath],
    ['SCRIPT_FILENAME', statusPath],
    ['REQUEST_URI', statusPath],
    ['QUERY_STRING', 'json'],
    ['DOCUMENT_ROOT', options.documentRoot ?? '/'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['REMOTE_ADDR', '127.0.0.1'],
  ];

  // Value series are created unregistered: show() registers them while FPM's numbers are known.
  const values: Array<readonly [string, Gauge | Counter]> = [];
  const gauge = (name: string, help: string): Gauge => {
    const metric = new Gauge({ name, help, registers: [] });
    values.push([name, metric]);
    return metric;
  };
  const counter = (name: string, help: string): Counter => {
    const metric = new Counter({ name, help, registers: [] });
    values.push([name, metric]);
    return metric;
  };
  const processes = new Gauge({
    name: 'askr_fpm_processes',
    help: 'php-fpm worker processes by state, from its status page.',
    labelNames: ['state'] as const,
    registers: [],
  });
  values.push(['askr_fpm_processes', processes]);
  const listenQueue = gauge(
    'askr_fpm_listen_queue',
    "Connections waiting in php-fpm's accept queue.",
  );
  // A high-water mark, not a count of events: a gauge (php-fpm_exporter types it a counter).
  const maxListenQueue = gauge(
    'askr_fpm_max_listen_queue',
    'Largest php-fpm accept queue since php-fpm started.',
  );
  const maxChildrenReached = counter(
    'askr_fpm_max_children_reached_total',
    'Times php-fpm hit pm.max_children since it started (resets when php-fpm restarts).',
  );
  const slowRequests = counter(
    'askr_fpm_slow_requests_total',
    'Requests over request_slowlog_timeout since php-fpm started (resets when php-fpm restarts).',
  );
  const accepted = counter(
    'askr_fpm_accepted_connections_total',
    'Connections php-fpm accepted since it started (resets when php-fpm restarts).',
  );
  const up = new Gauge({
    name: 'askr_fpm_status_up',
    help: '1 if the last scrape of the php-fpm status page succeeded; the other askr_fpm_* status series are absent while it is 0.',
    registers: [registry],
  });
  const scrapeErrors = new Counter({
    name: 'askr_fpm_status_scrape_errors_total',
    help: 'Failed scrapes of the php-fpm status page.',
    registers: [registry],
  });
  const names = [
    ...values.map(([name]) => name),
    'askr_fpm_status_up',
    'askr_fpm_status_scrape_errors_total',
  ];

  let error: string | null = null;
  let last: { sample: FpmStatus; at: number } | null = null;
  let stopped = false;
  let inFlight: Promise<string | null> | null = null;
  let timer: NodeJS.Timeout | undefined;

  const apply = (s: FpmStatus): void => {
    processes.set({ state: 'active' }, s.activeProcesses);
    processes.set({ state: 'idle' }, s.idleProcesses);
    processes.set({ state: 'total' }, s.totalProcesses);
    listenQueue.set(s.listenQueue);
    maxListenQueue.set(s.maxListenQueue);
    // FPM keeps these totals; a counter has no set(), so it is reset and raised to FPM's value
    // (synchronously: no scrape of /metrics can see the 0 in between).
    for (const [metric, value] of [
      [maxChildrenReached, s.maxChildrenReached],
      [slowRequests, s.slowRequests],
      [accepted, s.acceptedConnections],
    ] as const) {
      metric.reset();
      metric.inc(value);
    }
  };

  /** Puts the value series in the registry (FPM's numbers known) or takes them out (unknown). */
  const show = (known: boolean): void => {
    for (const [name, metric] of values) {
      const present = registry.getSingleMetric(name) !== undefined;
      if (known && !present) registry.registerMetric(metric);
      else if (!known && present) registry.removeSingleMetric(name);
    }
  };

  const fetchStatus = async (): Promise<FpmStatus | string> => {
    try {
      const res = await phpInternalRequest(pool, {
        params,
        timeoutMs,
        maxBodyBytes: MAX_STATUS_BYTES,
      });
      if (res.status !== 200)
        return `status page ${statusPath} answered ${res.status} (is pm.status_path = ${statusPath} set in the FPM pool?)`;
      return parseFpmStatus(res.body.toString('utf8'));
    } catch (err) {
      return toError(err).message;
    }
  };

  const scrape = async (): Promise<string | null> => {
    const result = await fetchStatus();
    if (stopped) return error;
    const previous = error;
    if (typeof result === 'string') {
      error = result;
      last = null;
      scrapeErrors.inc();
      up.set(0);
      show(false);
      // Log transitions only: a down FPM would otherwise log every interval.
      if (previous !== result)
        logger.warn({ statusPath, error: result }, 'php-fpm status scrape failed');
    } else {
      error = null;
      last = { sample: result, at: Date.now() };
      up.set(1);
      apply(result);
      show(true);
      if (previous !== null) logger.info({ statusPath }, 'php-fpm status scrape recovered');
    }
    return error;
  };

  const scrapeNow = (): Promise<string | null> => {
    inFlight ??= scrape().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };

  const loop = (): void => {
    if (stopped) return;
    void scrapeNow().then(() => {
      if (stopped) return;
      timer = setTimeout(loop, intervalMs);
      timer.unref();
    });
  };
  loop();

  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      for (const name of names) registry.removeSingleMetric(name);
    },
    lastError: () => error,
    scrapeNow,
    lastStatus: () => last,
  };
}
