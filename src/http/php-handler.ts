/**
 * The one place that translates HTTP into a FastCGI request and the CGI response back into HTTP.
 * Invariants: the request body is read before a worker is taken (unless a route streams it);
 * PHP's response is read as fast as FPM writes it (memory, then a temp file) so the worker is
 * free at END_REQUEST whatever the client's speed, except where streaming is the point
 * (X-Accel-Buffering: no, holds and SSE passthrough); the FPM connection is aborted (never
 * pooled) when the client goes away; instruction headers never reach the client.
 */
import { stat } from 'node:fs/promises';
import { ErrorCodes, isSidecarError, toError } from '../errors.ts';
import { AbortFlag, type FcgiCall, type FcgiPool } from '../fastcgi/pool.ts';
import type { SidecarConfig } from '../config/schema.ts';
import type { CgiHead } from '../cgi/cgi-head.ts';
import { cgiHeader } from '../cgi/cgi-head.ts';
import {
  clientHeaders,
  readPhpResponse,
  spoolBody,
  takeWholeResponse,
  type PhpResponse,
} from '../cgi/php-response.ts';
import { pump, type PumpOptions } from '../cgi/pump.ts';
import { Spool, type MemoryBudget } from '../cgi/spool.ts';
import { buildCgiParams, type CgiServerInfo } from './cgi-params.ts';
import { httpStatusOf, publicMessageOf } from './error-status.ts';
import { prepareBody, type PreparedBody } from './request-body.ts';
import {
  cgiRequestInfo,
  elapsedMs,
  headerPairs,
  sendError,
  type RequestContext,
} from './request-context.ts';
import type { Route } from './route-resolver.ts';
import { serveStaticFile } from './static-files.ts';
import { resolveInternalTarget } from './internal-redirect.ts';

export type PhpRoute = Extract<Route, { kind: 'php' }>;

/** Extension point for SSE holds and passthrough (src/sse). Returns true when it took the response. */
export interface ResponseInterceptor {
  intercept(ctx: RequestContext, response: PhpResponse, call: FcgiCall): Promise<boolean>;
}

/** Observability callbacks. They must not throw. */
export interface PhpHandlerHooks {
  /** A request body or a response needed a temp file. */
  onTempFile?(kind: 'request' | 'response'): void;
  /** A client was closed: its body stalled (body) or it stopped reading (send). */
  onClientTimeout?(kind: 'body' | 'send'): void;
}

export interface PhpHandlerDeps {
  pool: FcgiPool;
  config: () => SidecarConfig;
  serverInfo: CgiServerInfo;
  /** Memory shared by every buffered request body and response (server.buffer_memory_limit). */
  budget: MemoryBudget;
  interceptor?: ResponseInterceptor;
  hooks?: PhpHandlerHooks;
}

export async function handlePhp(
  ctx: RequestContext,
  route: PhpRoute,
  query: string,
  deps: PhpHandlerDeps,
): Promise<void> {
  const config = deps.config();
  if (ctx.errorStatus !== undefined) {
    // An error page (nginx error_page's internal redirect): GET, without the request's body.
    return runPhp(ctx, route, query, NO_BODY, deps, config);
  }
  const { headers } = ctx.req;
  if (headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) {
    // No body (most GETs): what prepareBody would answer, without its machinery.
    return runPhp(ctx, route, query, NO_BODY, deps, config);
  }
  let prepared: PreparedBody;
  try {
    prepared = await prepareBody(ctx.req, {
      maxBytes: config.server.max_body_size,
      memoryBytes: config.server.body_memory_size,
      tempDir: config.server.temp_dir,
      budget: deps.budget,
      timeoutMs: config.server.body_timeout,
      buffer: config.server.request_buffering && !streamsBody(ctx, config),
      onTempFile: () => deps.hooks?.onTempFile?.('request'),
    });
  } catch (err) {
    if (isSidecarError(err) && err.code === ErrorCodes.BODY_TIMEOUT) {
      deps.hooks?.onClientTimeout?.('body');
      ctx.log.info({ requestId: ctx.requestId, err: err.message }, 'request body timeout');
    }
    failBeforeResponse(ctx, err, { connection: 'close' });
    return;
  }
  try {
    await runPhp(ctx, route, query, prepared, deps, config);
  } finally {
    await prepared.cleanup();
  }
}

const NO_BODY: PreparedBody = { length: null, body: null, cleanup: () => Promise.resolve() };

/** A `server.stream_body_paths` route: its body goes to PHP as it arrives. */
function streamsBody(ctx: RequestContext, config: SidecarConfig): boolean {
  const paths = config.server.stream_body_paths;
  if (paths.length === 0) return false;
  const target = ctx.req.url ?? '/';
  return paths.some((prefix) => target.startsWith(prefix));
}

async function runPhp(
  ctx: RequestContext,
  route: PhpRoute,
  query: string,
  prepared: PreparedBody,
  deps: PhpHandlerDeps,
  config: SidecarConfig,
): Promise<void> {
  const { req, res } = ctx;
  const params = buildCgiParams(
    cgiRequestInfo(ctx, {
      method:
        ctx.errorStatus !== undefined && req.method !== 'HEAD' ? 'GET' : (req.method ?? 'GET'),
      rawTarget: req.url ?? '/',
      query,
      headers: headerPairs(req.rawHeaders),
      contentLength: prepared.length,
    }),
    route,
    deps.serverInfo,
    config.broadcast.socket === ''
      ? [['REQUEST_ID', ctx.requestId]]
      : [
          ['REQUEST_ID', ctx.requestId],
          // The PHP shim reads $_SERVER['ASKR_SOCKET'] to find the datagram socket.
          ['ASKR_SOCKET', config.broadcast.socket],
        ],
  );

  // The client going away aborts the FastCGI request (queued, connecting or running).
  const gone = new AbortFlag();
  const onClose = (): void => {
    if (!res.writableFinished) gone.abort();
  };
  res.on('close', onClose);

  const sentAt = process.hrtime.bigint();
  let call: FcgiCall;
  try {
    call = await deps.pool.request({
      params,
      body: prepared.body,
      sendTimeoutMs: config.fastcgi.send_timeout,
      readTimeoutMs: config.fastcgi.read_timeout,
      signal: gone,
      onStderr: (chunk) => logPhpStderr(ctx, chunk),
    });
  } catch (err) {
    res.off('close', onClose);
    failBeforeResponse(ctx, err);
    return;
  }

  let spool: Spool | null = null;
  try {
    // A small page is complete by now (FPM sent it with END_REQUEST): taken without an await.
    const parsed = takeWholeResponse(call) ?? (await readPhpResponse(call));
    ctx.upstreamMs = elapsedMs(sentAt);
    if ('error' in parsed) {
      call.abort();
      ctx.log.error({ requestId: ctx.requestId, err: parsed.error }, 'invalid response from PHP');
      sendError(ctx, 502, `PHP sent an invalid response: ${parsed.error}`);
      return;
    }
    const { head } = parsed;
    if (ctx.errorStatus !== undefined) {
      // nginx `error_page 404 /404.php`: the answer keeps the error's status.
      head.status = ctx.errorStatus;
      head.statusText = null;
    } else if (deps.interceptor && (await deps.interceptor.intercept(ctx, parsed, call))) return;

    const accel = cgiHeader(head, 'x-accel-redirect') ?? cgiHeader(head, 'x-sendfile');
    if (accel !== undefined) {
      await serveInternal(
        ctx,
        head,
        accel,
        cgiHeader(head, 'x-sendfile') !== undefined,
        config,
        call,
      );
      return;
    }
    const unbuffered = cgiHeader(head, 'x-accel-buffering')?.toLowerCase() === 'no';
    if (parsed.complete && !unbuffered && mayHaveBody(req.method, head.status)) {
      sendWhole(ctx, parsed);
      return;
    }
    const pumpOptions = sendOptions(ctx, deps, config);
    if (unbuffered || !config.fastcgi.buffering) {
      if (unbuffered) {
        // Unbuffered: every flush() of PHP goes out at once (Nagle off, head sent now).
        req.socket.setNoDelay(true);
      }
      res.writeHead(
        head.status,
        head.statusText ?? undefined,
        clientHeaders(head, ctx.requestId, undefined, ctx.phpHeaders),
      );
      if (unbuffered) res.flushHeaders();
      await pump(res, parsed.rest, parsed.read, pumpOptions);
      await call.done;
      res.end();
      return;
    }
    // Buffered: FPM's output goes to the spool as fast as FPM writes it; the client reads the
    // spool at its own pace. The worker is free at END_REQUEST, not when the client is done.
    const buffer = new Spool({
      memoryBytes: config.fastcgi.buffer_size,
      budget: deps.budget,
      tempDir: config.server.temp_dir,
      maxFileBytes: config.fastcgi.max_temp_file_size,
      onTempFile: () => deps.hooks?.onTempFile?.('response'),
    });
    spool = buffer;
    const producing = spoolBody(parsed, call, buffer);
    res.writeHead(
      head.status,
      head.statusText ?? undefined,
      clientHeaders(head, ctx.requestId, undefined, ctx.phpHeaders),
    );
    await pump(res, Buffer.alloc(0), () => buffer.read(), pumpOptions);
    await producing;
    res.end();
  } catch (err) {
    call.abort();
    if (gone.aborted || (isSidecarError(err) && httpStatusOf(err) === 499)) {
      if (ctx.error === null) ctx.error = 'client closed the connection';
      if (!res.headersSent) ctx.logStatus = 499;
      res.destroy();
      return;
    }
    failBeforeResponse(ctx, err);
  } finally {
    res.off('close', onClose);
    if (spool !== null) await spool.destroy();
  }
}

/** A response that carries a body whose length we may state (not HEAD, 1xx, 204 or 304). */
function mayHaveBody(method: string | undefined, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

/** The pump's options for a body sent at the client's pace. */
function sendOptions(
  ctx: RequestContext,
  deps: PhpHandlerDeps,
  config: SidecarConfig,
): PumpOptions {
  return {
    sendTimeoutMs: config.server.send_timeout,
    onSendTimeout: () => {
      deps.hooks?.onClientTimeout?.('send');
      ctx.error = `send timeout: the client read nothing for ${config.server.send_timeout} ms`;
    },
  };
}

/** Bodies up to this size go out as a latin1 string joined to the head (one write, no writev). */
const STRING_BODY_MAX_BYTES = 16 * 1024;

/**
 * END_REQUEST came with the head (a small page: FPM sends it in one write), so the whole body
 * is in memory. Answer in one write with a Content-Length instead of chunked framing and a
 * separate terminating write: one syscall less per request on the hot path. A small body is
 * handed to node as a latin1 string (each byte one character: the bytes sent are the same),
 * which node joins to the head and writes with one write(2) instead of a writev of two buffers.
 */
function sendWhole(ctx: RequestContext, response: PhpResponse): void {
  const { head, rest } = response;
  const headers = clientHeaders(head, ctx.requestId, undefined, ctx.phpHeaders);
  // PHP's own Content-Length (header('Content-Length: ...')) is kept as it is, as before.
  if (cgiHeader(head, 'content-length') === undefined) {
    headers.push('Content-Length', String(rest.length));
  }
  ctx.res.writeHead(head.status, head.statusText ?? undefined, headers);
  if (rest.length <= STRING_BODY_MAX_BYTES) ctx.res.end(rest.toString('latin1'), 'latin1');
  else ctx.res.end(rest);
}

async function serveInternal(
  ctx: RequestContext,
  head: CgiHead,
  target: string,
  isSendfile: boolean,
  config: SidecarConfig,
  call: FcgiCall,
): Promise<void> {
  // The PHP body is ignored (nginx does the same); let the script finish without reading it all.
  call.abort();
  const filePath = resolveInternalTarget(target, isSendfile, config.static.internal_locations);
  if (filePath === null) {
    ctx.log.error(
      { requestId: ctx.requestId, target },
      'X-Accel-Redirect/X-Sendfile target outside static.internal_locations',
    );
    sendError(
      ctx,
      500,
      'the application redirected to a file outside the configured internal locations',
    );
    return;
  }
  let stats;
  try {
    stats = await stat(filePath);
  } catch {
    sendError(ctx, 404, 'file not found');
    return;
  }
  if (!stats.isFile()) {
    sendError(ctx, 404, 'file not found');
    return;
  }
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (['set-cookie', 'content-disposition', 'cache-control', 'expires'].includes(lower)) {
      ctx.res.appendHeader(name, value);
    }
  }
  ctx.kind = 'static';
  await serveStaticFile(ctx.req, ctx.res, filePath, stats, {
    cacheControl: config.static.cache_control,
    precompressed: false,
  });
}

function logPhpStderr(ctx: RequestContext, chunk: Buffer): void {
  for (const line of chunk.toString('utf8').split('\n')) {
    if (line.trim() !== '') ctx.log.warn({ requestId: ctx.requestId, php: line }, 'PHP stderr');
  }
}

function failBeforeResponse(
  ctx: RequestContext,
  err: unknown,
  headers: Record<string, string> = {},
): void {
  const status = httpStatusOf(err);
  if (status === 499) {
    ctx.logStatus = 499;
    ctx.error = 'client closed the connection';
    ctx.res.destroy();
    return;
  }
  if (isSidecarError(err)) {
    if (status >= 500) {
      ctx.log.error(
        { requestId: ctx.requestId, code: err.code, err: err.message },
        'FastCGI request failed',
      );
    }
  } else {
    ctx.log.error({ requestId: ctx.requestId, err: toError(err) }, 'request failed');
  }
  sendError(
    ctx,
    isSidecarError(err) ? status : 502,
    isSidecarError(err) ? publicMessageOf(err) : 'the request to PHP-FPM failed',
    headers,
  );
}
