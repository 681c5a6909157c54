/**
 * The admin listener ([metrics].listen; docs/architecture.md, Design notes: Operations):
 * GET /metrics (Prometheus text), /healthz (the process answers) and /readyz (every readiness
 * check passes), and Pushpin's POST /publish/ ([grip]). Separate from the client server so it
 * can stay on loopback. Invariants: a check that throws or hangs counts as failed (bounded by
 * checkTimeoutMs), never as an exception; nothing a client sends reaches a label or a log field.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { toError } from '../errors.ts';
import { listenOn, parseListenAddress } from '../http/listen.ts';
import { parseFcgiAddress } from '../fastcgi/address.ts';

/** A readiness check: resolves null when ready, else a short reason. May throw (= not ready). */
export type ReadinessCheck = () => Promise<string | null>;

export interface AdminServerOptions {
  /** "HOST:PORT", "[IPv6]:PORT" or "unix:/absolute/path" (port 0 picks a free one). */
  listen: string;
  registry: Registry;
  /** Run in parallel on every GET /readyz; keys name them in the JSON answer. */
  checks: Record<string, ReadinessCheck>;
  /**
   * Checks that make /readyz say `"status": "degraded"` (still 200: the instance serves, with
   * less) instead of not ready, e.g. the cluster bus being down.
   */
  degraded?: Record<string, ReadinessCheck>;
  logger: Logger;
  /** A check not settled after this long fails with "timed out"; default 2000 ms. */
  checkTimeoutMs?: number;
  /** Extra GET and HEAD routes by exact path (the status page, its panel and /status.json). */
  routes?: Record<string, (req: IncomingMessage, res: ServerResponse) => void>;
  /**
   * Routes by exact path that take any method and answer for themselves, 405 included
   * (Pushpin's publish API, src/broadcast/pushpin-publish.ts).
   */
  control?: Record<string, (req: IncomingMessage, res: ServerResponse) => void>;
}

export interface AdminServer {
  /** "http://127.0.0.1:9100" (the bound port), or "unix:/path". */
  readonly url: string;
  /** Stops listening and cuts open connections (scrapers keep them alive). */
  close(): Promise<void>;
}

export type CheckResult = { ok: true } | { ok: false; error: string };

/** Runs every check in parallel; a throw or a timeout is a failure with its message. */
export async function runChecks(
  checks: Record<string, ReadinessCheck>,
  timeoutMs: number,
): Promise<{ ready: boolean; checks: Record<string, CheckResult> }> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`timed out after ${timeoutMs} ms`), timeoutMs);
      });
      try {
        const error = await Promise.race([check(), timeout]);
        return [name, error === null ? { ok: true } : { ok: false, error }];
      } catch (err) {
        return [name, { ok: false, error: toError(err).message }];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ready: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) };
}

/**
 * Readiness check of php-fpm: connects to its address ("unix:/path", "host:port", "[v6]:port")
 * and closes at once. Resolves null when the connect succeeds, else the reason. Never rejects.
 */
export function fpmReachable(address: string, timeoutMs = 1000): Promise<string | null> {
  let target: ReturnType<typeof parseFcgiAddress>;
  try {
    target = parseFcgiAddress(address);
  } catch (err) {
    return Promise.resolve(toError(err).message);
  }
  return new Promise((resolve) => {
    const socket =
      target.kind === 'unix'
        ? net.connect({ path: target.path })
        : net.connect({ host: target.host, port: target.port });
    const finish = (error: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(
      () => finish(`php-fpm at ${address}: connect timed out after ${timeoutMs} ms`),
      timeoutMs,
    );
    socket.once('connect', () => finish(null));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      finish(`php-fpm at ${address} unreachable: ${err.code ?? err.message}`),
    );
  });
}

/** Readiness check of a Unix socket file we bound (the datagram ingress): it exists and is a socket. */
export async function unixSocketPresent(path: string): Promise<string | null> {
  try {
    const st = await stat(path);
    return st.isSocket() ? null : `${path} is not a socket`;
  } catch (err) {
    return `${path}: ${(err as NodeJS.ErrnoException).code ?? toError(err).message}`;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, head: boolean): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : text);
}

/**
 * Starts the admin listener. Rejects with ConfigError naming metrics.listen when the address is
 * malformed or cannot be bound (EADDRINUSE, EACCES).
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { listen, registry, checks, logger } = options;
  const checkTimeoutMs = options.checkTimeoutMs ?? 2000;
  const bind = parseListenAddress('metrics.listen', listen);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    const control = options.control?.[path];
    if (control !== undefined) {
      control(req, res);
      return;
    }
    const extra = options.routes?.[path];
    if (extra !== undefined && (req.method === 'GET' || req.method === 'HEAD')) {
      extra(req, res);
      return;
    }
    const known = path === '/metrics' || path === '/healthz' || path === '/readyz';
    if (!known) {
      sendJson(
        res,
        404,
        {
          error: 'not found',
          paths: [
            '/metrics',
            '/healthz',
            '/readyz',
            ...Object.keys(options.routes ?? {}),
            ...Object.keys(options.control ?? {}),
          ],
        },
        false,
      );
      return;
    }
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { error: 'method not allowed' }, false);
      return;
    }
    if (path === '/healthz') {
      const uptimeSeconds = Math.round(process.uptime() * 1000) / 1000;
      sendJson(res, 200, { status: 'ok', uptimeSeconds }, head);
    } else if (path === '/readyz') {
      const [result, soft] = await Promise.all([
        runChecks(checks, checkTimeoutMs),
        runChecks(options.degraded ?? {}, checkTimeoutMs),
      ]);
      const status = !result.ready ? 'not_ready' : soft.ready ? 'ok' : 'degraded';
      sendJson(
        res,
        result.ready ? 200 : 503,
        { ...result, status, ...(options.degraded === undefined ? {} : { degraded: soft.checks }) },
        head,
      );
    } else {
      const text = await registry.metrics();
      res.writeHead(200, {
        'content-type': registry.contentType,
        'content-length': Buffer.byteLength(text),
        'cache-control': 'no-store',
      });
      res.end(head ? undefined : text);
    }
  };

  // requestTimeout 0: the status page's stream is long-lived; the header timeout still applies.
  const server = createServer({ headersTimeout: 10_000, requestTimeout: 0 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      // A collect() that threw: the scrape fails visibly (500) and the process keeps running.
      logger.error({ err: toError(err), path: req.url }, 'admin request failed');
      if (!res.headersSent) sendJson(res, 500, { error: toError(err).message }, false);
      else res.destroy();
    });
  });

  await listenOn(server, 'metrics.listen', listen, (err) =>
    logger.error({ err }, 'admin server error'),
  );

  const info = server.address();
  const url =
    info === null || typeof info === 'string'
      ? `unix:${'path' in bind ? bind.path : String(info)}`
      : `http://${info.family === 'IPv6' ? `[${info.address}]` : info.address}:${info.port}`;
  logger.info({ url }, 'admin listener (metrics, healthz, readyz) listening');

  let closing: Promise<void> | null = null;
  return {
    url,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
