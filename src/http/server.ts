/**
 * The client-facing HTTP server: limits, request ids, trusted-proxy evaluation, dispatch to the
 * static / PHP / stream handlers, one access-log line per request, and the drain used on shutdown.
 *
 *   request ─▶ [extra routes: events, publish] ─▶ resolveRoute ─┬─ static ─▶ serveStaticFile
 *                                                               ├─ php ────▶ handlePhp (FastCGI)
 *                                                               └─ error ──▶ 400/403/404
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomFillSync } from 'node:crypto';
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/schema.ts';
import { toError } from '../errors.ts';
import { handlePhp, type PhpHandlerDeps } from './php-handler.ts';
import { elapsedMs, sendError, type RequestContext } from './request-context.ts';
import { resolveRouteSync } from './route-resolver.ts';
import { serveStaticFile } from './static-files.ts';
import { clientFromForwarded, type ProxyTrust } from './trusted-proxies.ts';
import type { UpstreamProxy } from './upstream-proxy.ts';

/** A handler for a fixed path (events endpoint, publish endpoint). Returns once the response is owned. */
export type ExtraRoute = (ctx: RequestContext, url: URL) => Promise<void>;

export interface HttpServerDeps {
  config: () => SidecarConfig;
  logger: Logger;
  trust: () => ProxyTrust;
  php: PhpHandlerDeps;
  /** Exact-path routes checked before the filesystem (e.g. "/askr/events"). */
  extraRoutes?: () => ReadonlyMap<string, ExtraRoute>;
  /** HTTP upstream routes ([proxy] routes), checked before the filesystem; WebSocket upgrades too. */
  upstream?: () => UpstreamProxy | null;
  /** Called once per finished request (metrics). */
  onRequestDone?(ctx: RequestContext, status: number, durationMs: number): void;
  /** Called for requests refused before routing (bad framing, too-large head). */
  onRejected?(reason: string): void;
}

export interface HttpServer {
  readonly server: Server;
  /** Requests currently being handled (held streams included). */
  inFlight(): number;
  /** Stop accepting; resolves when in-flight requests end or after timeoutMs. */
  drain(timeoutMs: number): Promise<boolean>;
}

/** How a request that never parsed is answered, by node's error code (else BAD_REQUEST). */
interface ClientErrorAnswer {
  status: number;
  text: string;
  reason: string;
}
const BAD_REQUEST: ClientErrorAnswer = { status: 400, text: 'Bad Request', reason: 'bad_request' };
const CLIENT_ERRORS: Readonly<Record<string, ClientErrorAnswer>> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    text: 'Request Header Fields Too Large',
    reason: 'header_too_large',
  },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, text: 'Request Timeout', reason: 'header_timeout' },
};

export function createHttpServer(deps: HttpServerDeps): HttpServer {
  const config = deps.config();
  const server = createServer({
    maxHeaderSize: config.server.max_header_size,
    headersTimeout: config.server.header_timeout,
    // Streams live for hours: no whole-request timeout (the header timeout still applies).
    requestTimeout: 0,
    keepAliveTimeout: config.server.keep_alive_timeout,
    requireHostHeader: false,
    // Only upgrades an upstream route wants reach 'upgrade' (Node >= 24.9); others are plain requests.
    shouldUpgradeCallback: (req: IncomingMessage) => deps.upstream?.()?.wantsUpgrade(req) ?? false,
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const forwarded = forwardedClient(req, deps.trust());
    if (
      deps.upstream?.()?.upgrade(req, socket, head, forwarded.clientAddress, forwarded.https) !==
      true
    ) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    }
  });
  server.maxConnections = config.server.max_connections;
  let inFlight = 0;
  let draining = false;
  const idle: Array<() => void> = [];

  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // Refuse an oversized body before the client sends it (nginx answers 413 without reading).
    const length = Number(req.headers['content-length'] ?? '0');
    const max = deps.config().server.max_body_size;
    if (Number.isFinite(length) && length > max) {
      deps.onRejected?.('body_too_large');
      res.writeHead(413, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(
        `413 Content Too Large\nrequest body of ${length} bytes exceeds the limit of ${max} bytes (server.max_body_size)\n`,
      );
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const code = err.code ?? 'ERR';
    const { status, text, reason } = CLIENT_ERRORS[code] ?? BAD_REQUEST;
    deps.onRejected?.(reason);
    if (code !== 'ECONNRESET' && code !== 'EPIPE') {
      deps.logger.debug({ code, remote: socket.remoteAddress }, 'client error');
    }
    if (
      !socket.writable ||
      ((err as { bytesParsed?: number }).bytesParsed === 0 && code === 'ECONNRESET')
    ) {
      socket.destroy();
      return;
    }
    const message =
      status === 431
        ? `request head exceeds ${deps.config().server.max_header_size} bytes (server.max_header_size)`
        : status === 408
          ? 'request head not received in time (server.header_timeout)'
          : `malformed HTTP request (${code})`;
    const body = `${status} ${text}\n${message}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\n` +
        `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    inFlight += 1;
    const ctx = makeContext(req, res, deps);
    const socket = req.socket; // res 'close' may come after the socket is detached from req
    const bytesBefore = socket.bytesWritten;
    if (draining) res.setHeader('connection', 'close');
    res.once('close', () => {
      inFlight -= 1;
      // A response that closed before it finished was cut by the client (nginx's 499).
      const status = ctx.logStatus ?? (res.writableFinished ? res.statusCode : 499);
      const durationMs = elapsedMs(ctx.startedAt);
      if (deps.config().log.access_log) {
        ctx.log.info(
          {
            requestId: ctx.requestId,
            method: req.method,
            path: req.url,
            status,
            bytes: socket.bytesWritten - bytesBefore,
            durationMs: Math.round(durationMs * 1000) / 1000,
            upstreamMs: ctx.upstreamMs === null ? null : Math.round(ctx.upstreamMs * 1000) / 1000,
            kind: ctx.kind,
            client: ctx.clientAddress,
            ...(ctx.error === null ? {} : { error: ctx.error }),
          },
          'request',
        );
      }
      deps.onRequestDone?.(ctx, status, durationMs);
      if (inFlight === 0) for (const fn of idle.splice(0)) fn();
    });
    dispatch(ctx, deps).catch((err: unknown) => {
      ctx.log.error(
        { requestId: ctx.requestId, err: toError(err) },
        'unhandled error in request handler',
      );
      sendError(ctx, 500, 'internal error');
    });
  });

  return {
    server,
    inFlight: () => inFlight,
    drain(timeoutMs: number): Promise<boolean> {
      draining = true;
      server.close();
      server.closeIdleConnections();
      if (inFlight === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
  };
}

function makeContext(
  req: IncomingMessage,
  res: ServerResponse,
  deps: HttpServerDeps,
): RequestContext {
  const incoming = req.headers['x-request-id'];
  const remote = req.socket.remoteAddress ?? '';
  const trust = deps.trust();
  // A client-supplied request id is believed only from a trusted proxy (it lands in logs).
  const requestId =
    typeof incoming === 'string' && /^[\w.-]{1,128}$/.test(incoming) && trust.isTrusted(remote)
      ? incoming
      : newRequestId();
  const forwarded = forwardedClient(req, trust);
  return {
    req,
    res,
    requestId,
    log: deps.logger,
    startedAt: process.hrtime.bigint(),
    clientAddress: forwarded.clientAddress,
    https: forwarded.https,
    kind: 'error',
    upstreamMs: null,
    logStatus: null,
    error: null,
  };
}

/** Random bytes for request ids, drawn in blocks: one randomFillSync per 512 ids, not per request. */
const idPool = Buffer.alloc(8 * 512);
let idOffset = idPool.length;

/** 16 hex characters (64 random bits), the same as randomBytes(8).toString('hex'). */
function newRequestId(): string {
  if (idOffset === idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  const id = idPool.toString('hex', idOffset, idOffset + 8);
  idOffset += 8;
  return id;
}

/** The client address and scheme, from X-Forwarded-* only when the peer is a trusted proxy. */
function forwardedClient(
  req: IncomingMessage,
  trust: ProxyTrust,
): { clientAddress: string; https: boolean } {
  return clientFromForwarded(
    req.socket.remoteAddress ?? '',
    headerString(req.headers['x-forwarded-for']),
    headerString(req.headers['x-forwarded-proto']),
    trust,
    false,
  );
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

async function dispatch(ctx: RequestContext, deps: HttpServerDeps): Promise<void> {
  const { req } = ctx;
  const config = deps.config();
  const rawTarget = req.url ?? '/';
  if (!rawTarget.startsWith('/')) {
    // Absolute-form and authority-form targets are for forward proxies; we are an origin server.
    sendError(ctx, 400, 'request target must be an absolute path');
    return;
  }
  const extra = deps.extraRoutes?.();
  if (extra !== undefined && extra.size > 0) {
    const q = rawTarget.indexOf('?');
    const handler = extra.get(q === -1 ? rawTarget : rawTarget.slice(0, q));
    if (handler !== undefined) {
      await handler(ctx, new URL(rawTarget, 'http://sidecar.invalid'));
      return;
    }
  }
  const upstream = deps.upstream?.() ?? null;
  const upstreamRoute = upstream?.match(rawTarget) ?? null;
  if (upstream !== null && upstreamRoute !== null) {
    ctx.kind = 'upstream';
    await upstream.handle(ctx, upstreamRoute);
    return;
  }
  const { route, query } = resolveRouteSync(rawTarget, {
    root: config.server.root,
    index: config.server.index,
    phpScripts: config.server.php_scripts,
    staticEnabled: config.static.enabled,
  });
  switch (route.kind) {
    case 'error':
      sendError(ctx, route.status, route.reason);
      return;
    case 'static':
      ctx.kind = 'static';
      await serveStaticFile(req, ctx.res, route.filePath, route.stat, {
        cacheControl: config.static.cache_control,
        precompressed: config.static.precompressed,
      });
      return;
    case 'php':
      ctx.kind = 'php';
      await handlePhp(ctx, route, query, deps.php);
      return;
  }
}
