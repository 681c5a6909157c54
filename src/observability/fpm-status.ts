/**
 * Scrapes PHP-FPM's own status page (`pm.status_path`, `?json`) over FastCGI on a timer and mirrors
 * it as askr_fpm_* gauges. Invariants: at most one scrape in flight; a failed scrape sets
 * askr_fpm_status_up to 0, counts askr_fpm_status_scrape_errors_total and keeps the last good
 * values; nothing here throws after start (the sidecar never dies of a status page); the timer is
 * unref'd. The scrape goes through the pool, so it queues like any request when FPM is saturated.
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
    if (typeof value !== 'number' || !Number.isFinite(value))
      return `status page JSON lacks a numeric "${key}"`;
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

  const registers = [registry];
  const processes = new Gauge({
    name: 'askr_fpm_processes',
    help: 'php-fpm worker processes by state, from its status page.',
    labelNames: ['state'] as const,
    registers,
  });
  const single = (name: string, help: string): Gauge => new Gauge({ name, help, registers });
  const listenQueue = single(
    'askr_fpm_listen_queue',
    "Connections waiting in php-fpm's accept queue.",
  );
  const maxListenQueue = single(
    'askr_fpm_max_listen_queue',
    'Largest php-fpm accept queue since php-fpm started.',
  );
  const maxChildrenReached = single(
    'askr_fpm_max_children_reached',
    'Times php-fpm hit pm.max_children since it started.',
  );
  const slowRequests = single(
    'askr_fpm_slow_requests',
    'Requests over request_slowlog_timeout since php-fpm started.',
  );
  const accepted = single(
    'askr_fpm_accepted_connections',
    'Connections php-fpm accepted since it started (resets when php-fpm restarts).',
  );
  const up = single(
    'askr_fpm_status_up',
    '1 if the last scrape of the php-fpm status page succeeded.',
  );
  const scrapeErrors = new Counter({
    name: 'askr_fpm_status_scrape_errors_total',
    help: 'Failed scrapes of the php-fpm status page.',
    registers,
  });
  const names = [
    'askr_fpm_processes',
    'askr_fpm_listen_queue',
    'askr_fpm_max_listen_queue',
    'askr_fpm_max_children_reached',
    'askr_fpm_slow_requests',
    'askr_fpm_accepted_connections',
    'askr_fpm_status_up',
    'askr_fpm_status_scrape_errors_total',
  ];

  let error: string | null = null;
  let stopped = false;
  let inFlight: Promise<string | null> | null = null;
  let timer: NodeJS.Timeout | undefined;

  const apply = (s: FpmStatus): void => {
    processes.set({ state: 'active' }, s.activeProcesses);
    processes.set({ state: 'idle' }, s.idleProcesses);
    processes.set({ state: 'total' }, s.totalProcesses);
    listenQueue.set(s.listenQueue);
    maxListenQueue.set(s.maxListenQueue);
    maxChildrenReached.set(s.maxChildrenReached);
    slowRequests.set(s.slowRequests);
    accepted.set(s.acceptedConnections);
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
      scrapeErrors.inc();
      up.set(0);
      // Log transitions only: a down FPM would otherwise log every interval.
      if (previous !== result)
        logger.warn({ statusPath, error: result }, 'php-fpm status scrape failed');
    } else {
      error = null;
      up.set(1);
      apply(result);
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
  };
}
