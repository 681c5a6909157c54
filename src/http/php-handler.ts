/**
 * The one place that translates HTTP into a FastCGI request and the CGI response back into HTTP.
 * Invariants: the FPM connection is aborted (never pooled) when the client goes away; response
 * bytes flow with backpressure (a slow client pauses the FPM socket); instruction headers
 * (Status, X-Accel-*, X-Sendfile, X-Askr-*, Grip-*) never reach the client.
 */
import { stat } from 'node:fs/promises';
import { isSidecarError, toError } from '../errors.ts';
import type { FcgiCall, FcgiPool } from '../fastcgi/pool.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { buildCgiParams, type CgiServerInfo } from './cgi-params.ts';
import { CgiHeadParser, cgiHeader, type CgiHead } from './cgi-response.ts';
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
  intercept(
    ctx: RequestContext,
    head: CgiHead,
    rest: Buffer,
    call: FcgiCall,
    body: AsyncIterator<Buffer>,
  ): Promise<boolean>;
}

export interface PhpHandlerDeps {
  pool: FcgiPool;
  config: () => SidecarConfig;
  serverInfo: CgiServerInfo;
  interceptor?: ResponseInterceptor;
}

/** Largest CGI head accepted from PHP (nginx fastcgi_buffer_size is 4-8k; be generous). */
const MAX_CGI_HEAD_BYTES = 64 * 1024;

/** Response headers that are hop-by-hop or instructions to the front server. */
const STRIPPED = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'x-accel-redirect',
  'x-accel-buffering',
  'x-accel-charset',
  'x-accel-expires',
  'x-accel-limit-rate',
  'x-sendfile',
]);

export function isInstructionHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return STRIPPED.has(lower) || lower.startsWith('x-askr-') || lower.startsWith('grip-');
}

export async function handlePhp(
  ctx: RequestContext,
  route: PhpRoute,
  query: string,
  deps: PhpHandlerDeps,
): Promise<void> {
  const config = deps.config();
  let prepared: PreparedBody;
  try {
    prepared = await prepareBody(ctx.req, {
      maxBytes: config.server.max_body_size,
      memoryBytes: config.server.body_memory_size,
      tempDir: config.server.temp_dir,
    });
  } catch (err) {
    failBeforeResponse(ctx, err, { connection: 'close' });
    return;
  }
  try {
    await runPhp(ctx, route, query, prepared, deps, config);
  } finally {
    await prepared.cleanup();
  }
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
  const socket = req.socket;
  const params = buildCgiParams(
    cgiRequestInfo(ctx, {
      method: req.method ?? 'GET',
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

  const abort = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);

  const sentAt = process.hrtime.bigint();
  let call: FcgiCall;
  try {
    call = await deps.pool.request({
      params,
      body: prepared.body,
      sendTimeoutMs: config.fastcgi.send_timeout,
      readTimeoutMs: config.fastcgi.read_timeout,
      signal: abort.signal,
      onStderr: (chunk) => logPhpStderr(ctx, chunk),
    });
  } catch (err) {
    res.off('close', onClose);
    failBeforeResponse(ctx, err);
    return;
  }

  // END_REQUEST already in (a small page arrives in one socket read): everything is buffered in
  // stdout, so take it synchronously. The first next() of an async iterator would return the
  // same bytes (read() hands out the whole buffer); this skips the iterator machinery.
  const complete = call.ended ? readComplete(call) : null;
  const body =
    complete === null
      ? (call.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>)
      : emptyBody();
  try {
    const parsed = complete ?? (await readHead(body));
    ctx.upstreamMs = elapsedMs(sentAt);
    if ('error' in parsed) {
      call.abort();
      ctx.log.error({ requestId: ctx.requestId, err: parsed.error }, 'invalid response from PHP');
      sendError(ctx, 502, `PHP sent an invalid response: ${parsed.error}`);
      return;
    }
    const { head, rest } = parsed;
    if (deps.interceptor && (await deps.interceptor.intercept(ctx, head, rest, call, body))) return;

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
    if (call.ended && !unbuffered && mayHaveBody(req.method, head.status)) {
      await sendWhole(ctx, head, rest, body, call);
      return;
    }
    if (unbuffered) {
      // Unbuffered: every flush() of PHP goes out at once (Nagle off, head sent now).
      socket.setNoDelay(true);
    }
    res.writeHead(head.status, head.statusText ?? undefined, flatHeaders(head, ctx.requestId));
    if (unbuffered) res.flushHeaders();
    await pump(ctx, rest, body);
    await call.done;
    res.end();
  } catch (err) {
    call.abort();
    if (abort.signal.aborted) {
      ctx.logStatus = 499;
      ctx.error = 'client closed the connection';
      return;
    }
    failBeforeResponse(ctx, err);
  } finally {
    res.off('close', onClose);
  }
}

async function readHead(
  body: AsyncIterator<Buffer>,
): Promise<{ head: CgiHead; rest: Buffer } | { error: string }> {
  const parser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
  for (;;) {
    const next = await body.next();
    const result = next.done === true ? parser.finish() : parser.push(next.value);
    if (result.done) return { head: result.head, rest: result.rest };
    if ('error' in result) return { error: result.error };
  }
}

/** A response that carries a body whose length we may state (not HEAD, 1xx, 204 or 304). */
function mayHaveBody(method: string | undefined, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

/**
 * END_REQUEST came with the head (a small page: FPM sends it in one write), so the whole body
 * is already buffered in stdout (bounded by the stream's buffer plus one socket read). Answer
 * in one write with a Content-Length instead of chunked framing and a separate terminating
 * write: one syscall less per request on the hot path.
 */
async function sendWhole(
  ctx: RequestContext,
  head: CgiHead,
  rest: Buffer,
  body: AsyncIterator<Buffer>,
  call: FcgiCall,
): Promise<void> {
  const chunks = rest.length > 0 ? [rest] : [];
  let length = rest.length;
  for (;;) {
    const next = await body.next();
    if (next.done === true) break;
    chunks.push(next.value);
    length += next.value.length;
  }
  await call.done;
  const headers = flatHeaders(head, ctx.requestId);
  // PHP's own Content-Length (header('Content-Length: ...')) is kept as it is, as before.
  if (cgiHeader(head, 'content-length') === undefined) {
    headers.push('Content-Length', String(length));
  }
  ctx.res.writeHead(head.status, head.statusText ?? undefined, headers);
  ctx.res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length));
}

/** readHead for a response whose END_REQUEST has arrived: everything is in stdout's buffer. */
function readComplete(call: FcgiCall): { head: CgiHead; rest: Buffer } | { error: string } {
  const parser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
  const all = call.stdout.read() as Buffer | null;
  const result = all === null ? parser.finish() : parser.push(all);
  if (result.done) return { head: result.head, rest: result.rest };
  if ('error' in result) return { error: result.error };
  const last = parser.finish();
  if (last.done) return { head: last.head, rest: last.rest };
  return { error: 'error' in last ? last.error : 'incomplete CGI head' };
}

/** The rest of a body that is already complete: nothing more. */
function emptyBody(): AsyncIterator<Buffer> {
  return { next: () => Promise.resolve({ done: true, value: undefined }) };
}

/** Writes PHP's body to the client, waiting for 'drain' so the FPM socket pauses for slow clients. */
export async function pump(
  ctx: RequestContext,
  first: Buffer,
  body: AsyncIterator<Buffer>,
): Promise<void> {
  const { res } = ctx;
  if (first.length > 0 && !res.write(first)) await drained(ctx);
  for (;;) {
    const next = await body.next();
    if (next.done === true) return;
    if (!res.write(next.value)) await drained(ctx);
  }
}

function drained(ctx: RequestContext): Promise<void> {
  const { res } = ctx;
  if (res.destroyed) return Promise.reject(new Error('client connection closed'));
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      res.off('close', onClose);
      resolve();
    };
    const onClose = (): void => {
      res.off('drain', onDrain);
      reject(new Error('client connection closed'));
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
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

function flatHeaders(head: CgiHead, requestId: string): string[] {
  const out: string[] = [];
  for (const [name, value] of head.headers) {
    if (isInstructionHeader(name)) continue;
    out.push(name, value);
  }
  out.push('X-Request-Id', requestId);
  return out;
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
  if (isSidecarError(err)) {
    if (err.status === 499) {
      ctx.logStatus = 499;
      ctx.error = 'client closed the connection';
      ctx.res.destroy();
      return;
    }
    if (err.status >= 500)
      ctx.log.error(
        { requestId: ctx.requestId, code: err.code, err: err.message },
        'FastCGI request failed',
      );
    sendError(ctx, err.status, publicMessage(err.status, err.message), headers);
    return;
  }
  const e = toError(err);
  ctx.log.error({ requestId: ctx.requestId, err: e }, 'request failed');
  sendError(ctx, 502, 'the request to PHP-FPM failed', headers);
}

/** Clients learn what went wrong, not the internals (addresses and paths stay in the log). */
function publicMessage(status: number, message: string): string {
  if (status === 502)
    return `PHP-FPM is unavailable or failed: ${message.replace(/(unix:)?\/[^\s:]+|\d+\.\d+\.\d+\.\d+:\d+/g, '<fpm>')}`;
  return message;
}
