/**
 * The client-facing HTTP server: limits, request ids, trusted-proxy evaluation, dispatch to the
 * static / PHP / stream handlers, one access-log line per request, and the drain used on shutdown.
 * What nginx refuses before routing is refused here too, counted by onRejected and answered with a
 * plain-text reason; the access log records the status the client really got. A held stream may
 * take its connection over from node:http (detached-response.ts): its request then ends, counted
 * and logged the same, when that connection closes.
 *
 *   request ─▶ refusalOf ─▶ [extra routes] ─▶ resolveRoute ─┬─ static ─▶ serveStaticFile
 *                └─ 400/405/505                             ├─ php ────▶ handlePhp (FastCGI)
 *                                                           └─ error ──▶ 400/403/404
 *   CONNECT ─▶ 405;   unparsable head or body framing ─▶ clientError ─▶ 400/408/431/505
 */
import { redactTarget } from './log-redact.ts';
import { writeAccessLine } from '../observability/logger.ts';
import { RateLimitedLog } from '../observability/rate-limited-log.ts';
import { Server, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { contentTypeFor } from './mime-types.ts';
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/schema.ts';
import { toError } from '../errors.ts';
import { handlePhp, type PhpHandlerDeps } from './php-handler.ts';
import { elapsedMs, sendError, type RequestContext } from './request-context.ts';
import { StreamableResponse, type DetachedResponse } from './detached-response.ts';
import {
  ALLOWED_METHODS,
  answerOnSocket,
  BAD_REQUEST,
  CLIENT_ERRORS,
  refusalOf,
} from './request-checks.ts';
import type { OpenFileCache } from './open-file-cache.ts';
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
  /** Path-prefix routes (a prefix ends with "/"), checked after the exact ones. */
  prefixRoutes?: () => ReadonlyArray<readonly [string, ExtraRoute]>;
  /** Headers every PHP response gets beside PHP's own (flat name, value list). */
  phpHeaders?: () => readonly string[];
  /** HTTP upstream routes ([proxy] routes), checked before the filesystem; WebSocket upgrades too. */
  upstream?: () => UpstreamProxy | null;
  /** The open-file cache (static.open_file_cache) for route lookups and static files; null: none. */
  fileCache?: () => OpenFileCache | null;
  /** Called once per client connection accepted (metrics: open and accepted connections). */
  onConnection?(socket: Socket): void;
  /** Called once per finished request (metrics). */
  onRequestDone?(ctx: RequestDone, status: number, durationMs: number): void;
  /**
   * Called for requests refused before routing (bad framing, too-large head, missing Host,
   * unsupported version or method); `reason` is one of REQUEST_REJECT_REASONS.
   */
  onRejected?(reason: string): void;
}

export interface HttpServer {
  readonly server: Server;
  /** Requests currently being handled (held streams included). */
  inFlight(): number;
  /** Stop accepting; resolves when in-flight requests end or after timeoutMs. */
  drain(timeoutMs: number): Promise<boolean>;
}

/**
 * What the access log and the metrics need of a finished request: a RequestContext, or for a held
 * stream taken over from node:http (detached-response.ts) a copy of these fields, so that the
 * request and response objects are not kept for the stream's lifetime.
 */
export type RequestDone = Pick<
  RequestContext,
  'requestId' | 'log' | 'startedAt' | 'kind' | 'clientAddress' | 'upstreamMs' | 'error'
>;

/**
 * A request whose response has not closed yet, found from its socket by the clientError handler:
 * when the body framing breaks (a bad chunk) that handler answers, and `cutBy` is what the access
 * log must record instead of the 499 the handler reading the body would report.
 */
interface Exchange {
  readonly ctx: RequestContext;
  cutBy: { status: number; error: string } | null;
  /** socket.bytesWritten when the request came (keep-alive connections carry several). */
  readonly bytesBefore: number;
  /** The response's 'close' listener: it ends the request, unless a stream took the connection. */
  readonly onClose: () => void;
}

export function createHttpServer(deps: HttpServerDeps): HttpServer {
  const config = deps.config();
  let inFlight = 0;
  let draining = false;
  const idle: Array<() => void> = [];
  const exchanges = new WeakMap<Socket, Exchange>();
  /** Held streams whose connection node:http let go of: it no longer knows of them. */
  const detached = new Set<DetachedResponse>();

  /** The server's responses: a held stream may take the connection over (issue 13, memory). */
  class Response extends StreamableResponse {
    /** This response's exchange, set when its request comes. */
    exchange: Exchange | undefined = undefined;

    onTakenOver(stream: DetachedResponse): void {
      if (this.exchange !== undefined) takeOverExchange(this.exchange, stream);
    }
  }
  /** closeAllConnections() closes the held streams too: node:http no longer lists them. */
  class SidecarServer extends Server<typeof IncomingMessage, typeof Response> {
    override closeAllConnections(): void {
      super.closeAllConnections();
      for (const stream of detached) stream.destroy();
    }
  }

  const server = new SidecarServer({
    ServerResponse: Response,
    maxHeaderSize: config.server.max_header_size,
    headersTimeout: config.server.header_timeout,
    // Streams live for hours: no whole-request timeout (the header timeout still applies).
    requestTimeout: 0,
    keepAliveTimeout: config.server.keep_alive_timeout,
    // Node's own Host check answers a bare 400 that bypasses the access log and the rejection
    // metric; refusalOf applies the same rule (HTTP/1.1 only, HTTP/1.0 needs no Host) and more.
    requireHostHeader: false,
    // Only upgrades an upstream route wants reach 'upgrade' (Node >= 24.9); others are plain
    // requests, and so are refused ones (the 'request' handler answers them).
    shouldUpgradeCallback: (req: IncomingMessage) =>
      refusalOf(req) === null && (deps.upstream?.()?.wantsUpgrade(req) ?? false),
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const forwarded = forwardedClient(req, deps.trust());
    if (
      deps.upstream?.()?.upgrade(req, socket, head, forwarded.clientAddress, forwarded.https) !==
      true
    ) {
      // Node removed its own error handler from an upgraded socket: a reset must not crash us.
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    }
  });
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    // Without a listener Node destroys a CONNECT's socket: the client sees a silent close. We are
    // an origin server, not a forward proxy; nginx answers 405.
    deps.onRejected?.('method_not_allowed');
    deps.logger.debug({ method: req.method, remote: socket.remoteAddress }, 'CONNECT refused');
    // Node has removed its own socket listeners: a reset must not become an uncaught 'error'.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      deps.logger.debug({ code: err.code, remote: socket.remoteAddress }, 'client error');
    });
    answerOnSocket(socket, 405, 'CONNECT is not allowed: this is an origin server, not a proxy', {
      allow: ALLOWED_METHODS,
    });
  });
  server.maxConnections = config.server.max_connections;
  server.on('connection', (socket: Socket) => deps.onConnection?.(socket));
  // Past server.max_connections Node closes the new connection at once (nginx: worker_connections
  // are not enough): counted, and logged at most every 10 s, never per connection.
  const dropLog = new RateLimitedLog(deps.logger, 'warn');
  server.on('drop', (data?: { remoteAddress?: string }) => {
    deps.onRejected?.('max_connections');
    dropLog.log(
      { limit: server.maxConnections, remote: data?.remoteAddress },
      'connection refused: server.max_connections client connections are open',
    );
  });

  /** The access-log line, the metrics, the in-flight count: once per request. */
  function requestDone(
    done: RequestDone,
    method: string | undefined,
    target: string | undefined,
    status: number,
    bytes: number,
  ): void {
    inFlight -= 1;
    const durationMs = elapsedMs(done.startedAt);
    if (deps.config().log.access_log) {
      // Byte for byte what done.log.info(fields, 'request') writes, without pino's generic path.
      writeAccessLine(done.log, {
        requestId: done.requestId,
        method,
        path: redactTarget(target ?? ''),
        status,
        bytes,
        durationMs: Math.round(durationMs * 1000) / 1000,
        upstreamMs: done.upstreamMs === null ? null : Math.round(done.upstreamMs * 1000) / 1000,
        kind: done.kind,
        client: done.clientAddress,
        error: done.error ?? undefined,
      });
    }
    deps.onRequestDone?.(done, status, durationMs);
    if (inFlight === 0) for (const fn of idle.splice(0)) fn();
  }

  /**
   * A held stream took the connection over (detached-response.ts): the response will not close,
   * so the request ends with the stream's connection, counted and logged as it would have been
   * (the status sent, or 499 when the stream was cut), from a copy of what the log needs.
   */
  function takeOverExchange(exchange: Exchange, stream: DetachedResponse): void {
    const { socket } = stream;
    const { ctx, bytesBefore } = exchange;
    const { res } = ctx;
    if (exchanges.get(socket) === exchange) exchanges.delete(socket);
    res.removeListener('close', exchange.onClose);
    const done: RequestDone = {
      requestId: ctx.requestId,
      log: ctx.log,
      startedAt: ctx.startedAt,
      kind: ctx.kind,
      clientAddress: ctx.clientAddress,
      upstreamMs: ctx.upstreamMs,
      error: ctx.error,
    };
    const { method, url } = ctx.req;
    const status = ctx.logStatus ?? res.statusCode;
    detached.add(stream);
    stream.once('close', () => {
      detached.delete(stream);
      requestDone(
        done,
        method,
        url,
        stream.finished ? status : 499,
        socket.bytesWritten - bytesBefore,
      );
    });
  }

  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (refusalOf(req) !== null) {
      // Refused without inviting the body: the 'request' handler answers (no 100 Continue).
      server.emit('request', req, res);
      return;
    }
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
    const exchange = exchanges.get(socket);
    if (exchange !== undefined && !exchange.ctx.req.complete && code.startsWith('HPE_')) {
      endBrokenBody(exchange, socket, code, (err as { reason?: unknown }).reason);
      return;
    }
    // The client went away (a reset, often an idle keep-alive connection closed by a browser):
    // nothing was refused, so nothing is counted as a rejection and nothing is answered.
    if (code === 'ECONNRESET' || code === 'EPIPE') {
      socket.destroy();
      return;
    }
    const answer = CLIENT_ERRORS[code] ?? BAD_REQUEST;
    deps.onRejected?.(answer.reason);
    deps.logger.debug({ code, remote: socket.remoteAddress }, 'client error');
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    answerOnSocket(socket, answer.status, answer.message(code, deps.config()));
  });

  /**
   * The head parsed but the body framing did not (a bad chunk size, a chunk longer than announced):
   * the handler reading the body only sees the socket close. Answer 400 when nothing was sent yet
   * and record the answer the client really got, with the reason, for the access log.
   */
  function endBrokenBody(exchange: Exchange, socket: Socket, code: string, reason: unknown): void {
    const { ctx } = exchange;
    const what =
      ctx.req.headers['transfer-encoding'] === undefined ? 'request body' : 'chunked body';
    const detail = typeof reason === 'string' ? `${reason.toLowerCase()}, ` : '';
    const error = `malformed request body framing: invalid ${what} (${detail}${code})`;
    deps.onRejected?.('bad_framing');
    ctx.log.debug({ requestId: ctx.requestId, code, remote: socket.remoteAddress }, error);
    const { res } = ctx;
    if (res.writableEnded) {
      // The answer went out before the body was read: let it reach the client, then close.
      socket.end();
      return;
    }
    exchange.cutBy = { status: res.headersSent ? res.statusCode : 400, error };
    if (res.headersSent || !socket.writable) {
      socket.destroy();
      return;
    }
    answerOnSocket(socket, 400, `${error}\nrequest id: ${ctx.requestId}`, {
      'x-request-id': ctx.requestId,
    });
  }

  server.on('request', (req: IncomingMessage, res: Response) => {
    inFlight += 1;
    const ctx = makeContext(req, res, deps);
    const extras = responseExtras(deps.config());
    if (extras.errorPages) {
      ctx.errorPage = (status) => errorPage(deps.config(), status);
      ctx.phpErrorPage = (status) => phpErrorPage(ctx, status, deps);
    }
    // server.headers: on every response, errors included (nginx add_header … always); a header
    // the handler sets itself (PHP's own) replaces it.
    for (const [name, value] of extras.headers) res.setHeader(name, value);
    const socket = req.socket; // res 'close' may come after the socket is detached from req
    const exchange: Exchange = {
      ctx,
      cutBy: null,
      bytesBefore: socket.bytesWritten,
      onClose: () => {
        if (exchanges.get(socket) === exchange) exchanges.delete(socket);
        if (exchange.cutBy !== null) {
          // clientError answered (broken body framing); the handler saw only a closed socket.
          ctx.logStatus = exchange.cutBy.status;
          ctx.error = exchange.cutBy.error;
        }
        // A response that closed before it finished was cut by the client (nginx's 499).
        const status = ctx.logStatus ?? (res.writableFinished ? res.statusCode : 499);
        requestDone(ctx, req.method, req.url, status, socket.bytesWritten - exchange.bytesBefore);
      },
    };
    exchanges.set(socket, exchange);
    res.exchange = exchange;
    if (draining) res.setHeader('connection', 'close');
    res.once('close', exchange.onClose);
    const refusal = refusalOf(req);
    if (refusal !== null) {
      deps.onRejected?.(refusal.reason);
      // Close after answering: the body (if any) was not read, and its framing may be faulty.
      sendError(ctx, refusal.status, refusal.message, { connection: 'close', ...refusal.headers });
      return;
    }
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
    const path = q === -1 ? rawTarget : rawTarget.slice(0, q);
    const handler =
      extra.get(path) ?? deps.prefixRoutes?.().find(([prefix]) => path.startsWith(prefix))?.[1];
    if (handler !== undefined) {
      await handler(ctx, new URL(rawTarget, 'http://sidecar.invalid'));
      return;
    }
  }
  const phpHeaders = deps.phpHeaders?.();
  if (phpHeaders !== undefined && phpHeaders.length > 0) ctx.phpHeaders = phpHeaders;
  const upstream = deps.upstream?.() ?? null;
  const upstreamRoute = upstream?.match(rawTarget) ?? null;
  if (upstream !== null && upstreamRoute !== null) {
    ctx.kind = 'upstream';
    await upstream.handle(ctx, upstreamRoute);
    return;
  }
  const fileCache = deps.fileCache?.() ?? null;
  const { route, query } = resolveRouteSync(rawTarget, {
    root: config.server.root,
    index: config.server.index,
    phpScripts:
      config.server.php_scripts ||
      config.server.recipe === 'wordpress' ||
      config.server.recipe === 'generic',
    recipe: config.server.recipe,
    followSymlinks: config.server.follow_symlinks,
    staticEnabled: config.static.enabled,
    fileCache,
  });
  switch (route.kind) {
    case 'error':
      sendError(ctx, route.status, route.reason);
      return;
    case 'redirect': {
      // nginx's absolute_redirect + port_in_redirect: the host the client named (lowercased,
      // without its port), then the port this server listens on unless it is the scheme's own.
      const scheme = ctx.https ? 'https' : 'http';
      const named = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
      const host = named !== '' ? named : config.server.server_name;
      const localPort = req.socket.localPort ?? 0;
      const port =
        localPort === 0 || localPort === (ctx.https ? 443 : 80) ? '' : `:${String(localPort)}`;
      const location = host === '' ? route.location : `${scheme}://${host}${port}${route.location}`;
      const body = `301 Moved Permanently\n${location}\n`;
      ctx.res.writeHead(301, {
        location,
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      ctx.res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    case 'static':
      ctx.kind = 'static';
      await serveStaticFile(req, ctx.res, route.filePath, route.stat, {
        cacheControl: config.static.cache_control,
        precompressed: config.static.precompressed,
        fileCache,
      });
      return;
    case 'php':
      ctx.kind = 'php';
      await handlePhp(ctx, route, query, deps.php);
      return;
  }
}

/** What server.headers and server.error_pages add to a request, derived once per config. */
const extrasByConfig = new WeakMap<
  SidecarConfig,
  { headers: ReadonlyArray<[string, string]>; errorPages: boolean }
>();

function responseExtras(config: SidecarConfig): {
  headers: ReadonlyArray<[string, string]>;
  errorPages: boolean;
} {
  let extras = extrasByConfig.get(config);
  if (extras === undefined) {
    extras = {
      headers: Object.entries(config.server.headers),
      errorPages: Object.keys(config.server.error_pages).length > 0,
    };
    extrasByConfig.set(config, extras);
  }
  return extras;
}

/** Largest error page sent from memory. */
const MAX_ERROR_PAGE_BYTES = 1024 * 1024;

/**
 * server.error_pages: the file for `status` under the root, read now (errors are rare, and a
 * changed page shows at once); null when none is configured or it cannot be read (the plain
 * answer is sent then, and the problem logged by the caller's access line).
 */
function errorPage(
  config: SidecarConfig,
  status: number,
): { body: Buffer; contentType: string } | null {
  const path = config.server.error_pages[String(status)];
  if (path === undefined) return null;
  const resolved = resolveRouteSync(path, {
    root: config.server.root,
    index: config.server.index,
    phpScripts: false,
    staticEnabled: true,
    followSymlinks: config.server.follow_symlinks,
  }).route;
  if (resolved.kind !== 'static' || resolved.stat.size > MAX_ERROR_PAGE_BYTES) return null;
  try {
    return {
      body: readFileSync(resolved.filePath),
      contentType: contentTypeFor(resolved.filePath),
    };
  } catch {
    return null;
  }
}

/**
 * server.error_pages naming a `*.php` under the root: runs it as nginx's error_page does (an
 * internal GET to the script, REQUEST_URI and the query of the original request, the error's
 * status kept). Never twice for one request: an error while it runs is answered plainly.
 */
function phpErrorPage(ctx: RequestContext, status: number, deps: HttpServerDeps): boolean {
  const config = deps.config();
  const path = config.server.error_pages[String(status)];
  if (path?.endsWith('.php') !== true || ctx.errorStatus !== undefined || ctx.res.headersSent) {
    return false;
  }
  const root = config.server.root;
  const scriptFilename = (root.endsWith('/') ? root.slice(0, -1) : root) + path;
  ctx.errorStatus = status;
  ctx.kind = 'php';
  const rawTarget = ctx.req.url ?? '/';
  const q = rawTarget.indexOf('?');
  handlePhp(
    ctx,
    { kind: 'php', scriptName: path, scriptFilename, pathInfo: '', documentUri: path },
    q === -1 ? '' : rawTarget.slice(q + 1),
    deps.php,
  ).catch((err: unknown) => {
    ctx.log.error({ requestId: ctx.requestId, err: toError(err) }, 'error page failed');
    ctx.res.destroy();
  });
  return true;
}
