/**
 * `[proxy] routes`: requests under a configured prefix go to an HTTP upstream instead of PHP,
 * WebSocket upgrades included (http-proxy-3 does the piping). Like nginx `proxy_pass
 * http://host:port;` (no URI): the original request URI and the client's Host are forwarded
 * unchanged. Invariants: no error from an upstream or a client socket escapes as an exception;
 * a client that goes away destroys its upstream request; every timer is cleared with its request.
 */
import { randomBytes } from 'node:crypto';
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import type { Logger } from 'pino';
import { ErrorCodes, SidecarError, isSidecarError, toError } from '../errors.ts';
import { httpStatusOf } from './error-status.ts';
import { elapsedMs, sendError, type RequestContext } from './request-context.ts';
import { matchUpstreamRoute, parseUpstreamRoutes, type UpstreamRoute } from './upstream-routes.ts';
import {
  forwardedHeaders,
  isWebSocketUpgrade,
  stripRequestHopByHop,
  stripResponseHopByHop,
} from './upstream-headers.ts';

export type { UpstreamRoute } from './upstream-routes.ts';
export { isWebSocketUpgrade } from './upstream-headers.ts';

export interface UpstreamProxyOptions {
  /** `proxy.routes`: prefix → "http(s)://host:port". */
  routes: Readonly<Record<string, string>>;
  /** `proxy.connect_timeout`: TCP connect (DNS included) to an upstream; 502 when it passes. */
  connectTimeoutMs: number;
  /** `proxy.timeout`: idle time on an upstream connection (request, response or WebSocket); 504. */
  timeoutMs: number;
  logger: Logger;
}

export interface UpstreamProxy {
  /** Longest-prefix match of a request target (query ignored); null when no route matches. */
  match(requestTarget: string): UpstreamRoute | null;
  /**
   * Proxies one HTTP request; resolves when the client response closes. Never rejects: errors
   * are answered (502 unreachable / connect timeout, 504 idle timeout; a started response is
   * cut) and recorded in ctx.error / ctx.logStatus. Sets ctx.upstreamMs at the response head.
   */
  handle(ctx: RequestContext, route: UpstreamRoute): Promise<void>;
  /** For the server's `shouldUpgradeCallback`: a WebSocket upgrade for a configured route. */
  wantsUpgrade(req: IncomingMessage): boolean;
  /**
   * For server.on('upgrade'): proxies a WebSocket upgrade when a route matches and returns true
   * (the socket is then owned here: errors are answered on it or it is destroyed). Returns false,
   * touching nothing, when no route matches. `clientAddress` / `https` come from trusted-proxy
   * evaluation, as in RequestContext.
   */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    clientAddress: string,
    https: boolean,
    /** Sent upstream as X-Request-Id and logged; a random one when absent. */
    requestId?: string,
  ): boolean;
  /** Applies new settings to later requests. @throws ConfigError (old settings are kept). */
  reconfigure(
    routes: Readonly<Record<string, string>>,
    connectTimeoutMs: number,
    timeoutMs: number,
  ): void;
  /** Open WebSocket tunnels (for metrics and tests). */
  openTunnels(): number;
  /** Destroys open WebSocket tunnels and idle upstream connections. */
  close(): void;
}

/**
 * Idle keep-alive sockets kept per upstream (nginx `keepalive`). Busy sockets are not capped by
 * the agent: they are bounded by in-flight client requests (server.max_connections), and a
 * request queued inside the agent would wait outside every timeout.
 */
const MAX_FREE_SOCKETS = 64;
/**
 * An idle upstream socket is closed after this long: below the common 5 s server keep-alive
 * (Node, uvicorn, gunicorn), so we never reuse a socket the upstream is closing (which would
 * fail that request with ECONNRESET). Node's agent also honours a `Keep-Alive: timeout=N` hint.
 */
const FREE_SOCKET_TIMEOUT_MS = 4000;

interface Settings {
  routes: UpstreamRoute[];
  connectTimeoutMs: number;
  timeoutMs: number;
}

interface WebCall {
  ctx: RequestContext;
  route: UpstreamRoute;
  settings: Settings;
  startedAt: bigint;
}

interface WsCall {
  route: UpstreamRoute;
  settings: Settings;
  socket: Duplex;
  upgraded: boolean;
  proxyReq: ClientRequest | null;
}

/**
 * Creates the proxy for `proxy.routes`.
 * @throws ConfigError naming `proxy.routes` and the bad entry (see parseUpstreamRoutes).
 */
export function createUpstreamProxy(options: UpstreamProxyOptions): UpstreamProxy {
  const log = options.logger;
  let settings = makeSettings(options.routes, options.connectTimeoutMs, options.timeoutMs);
  const agentOptions = {
    keepAlive: true,
    maxFreeSockets: MAX_FREE_SOCKETS,
    timeout: FREE_SOCKET_TIMEOUT_MS,
  };
  const httpAgent = new HttpAgent(agentOptions);
  const httpsAgent = new HttpsAgent(agentOptions);
  const webCalls = new WeakMap<IncomingMessage, WebCall>();
  const wsCalls = new WeakMap<IncomingMessage, WsCall>();
  const tunnels = new Set<Duplex>();

  // toProxy: the path is req.url as received, not re-serialized through WHATWG URL (which would
  // resolve "..", re-encode bytes and lose the original); prependPath off: targets have no path.
  const proxy = new ProxyServer({ toProxy: true, prependPath: false, xfwd: false });

  // Errors of calls made with a callback reach the callback; what remains here are client socket
  // errors of WebSocket calls (http-proxy-3 forwards them). Without a listener they would throw.
  proxy.on('error', (err, _req, resOrSocket) => {
    log.debug({ err }, 'upstream proxy: client socket error');
    resOrSocket.destroy();
  });

  proxy.on(
    'proxyReq',
    (proxyReq: ClientRequest, req: IncomingMessage, _res, _opts, socket: Socket) => {
      const call = webCalls.get(req);
      if (call === undefined) return;
      armTimeouts(proxyReq, socket, call.route, call.settings);
    },
  );

  proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage) => {
    const call = webCalls.get(req);
    if (call === undefined) return;
    const { ctx } = call;
    ctx.upstreamMs = elapsedMs(call.startedAt);
    // Runs before http-proxy-3 copies the head to the client: drop hop-by-hop headers there.
    stripResponseHopByHop(proxyRes.headers);
    const ours = ctx.res.getHeader('connection');
    // Keep the server's own decision (e.g. "close" while draining) over the upstream's.
    if (typeof ours === 'string') proxyRes.headers.connection = ours;
    proxyRes.once('close', () => {
      if (proxyRes.complete || ctx.res.destroyed) return;
      // The upstream vanished mid-body: cutting the client connection is the only honest signal.
      ctx.error ??= `${upstreamName(call.route)} closed the connection before the response ended`;
      ctx.logStatus ??= 502;
      ctx.res.destroy();
    });
  });

  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
    const call = wsCalls.get(req);
    if (call === undefined) return;
    call.proxyReq = proxyReq;
    proxyReq.once('socket', (socket: Socket) => {
      armTimeouts(proxyReq, socket, call.route, call.settings);
    });
    proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      call.upgraded = true;
      // After the handshake the tunnel is idle-limited on the upstream socket (it carries both
      // directions). Deferred: http-proxy-3 resets socket timeouts right after this listener.
      setImmediate(() => {
        upstream.setTimeout(call.settings.timeoutMs, () => upstream.destroy());
      });
    });
  });

  function armTimeouts(
    proxyReq: ClientRequest,
    socket: Socket,
    route: UpstreamRoute,
    s: Settings,
  ): void {
    if (socket.connecting) {
      const timer = setTimeout(() => {
        proxyReq.destroy(
          new SidecarError(
            ErrorCodes.UPSTREAM_RESPONSE,
            `${upstreamName(route)} did not accept the connection within ${s.connectTimeoutMs} ms (proxy.connect_timeout)`,
          ),
        );
      }, s.connectTimeoutMs);
      const clear = (): void => clearTimeout(timer);
      socket.once('connect', clear);
      socket.once('close', clear);
    }
    // Idle timeout (nginx proxy_read_timeout / proxy_send_timeout); starts once connected.
    proxyReq.setTimeout(s.timeoutMs, () => {
      proxyReq.destroy(
        new SidecarError(
          ErrorCodes.UPSTREAM_TIMEOUT,
          `${upstreamName(route)} sent nothing for ${s.timeoutMs} ms (proxy.timeout)`,
        ),
      );
    });
  }

  return {
    match: (requestTarget) => matchUpstreamRoute(settings.routes, requestTarget),

    wantsUpgrade: (req) =>
      isWebSocketUpgrade(req) && matchUpstreamRoute(settings.routes, req.url ?? '/') !== null,

    handle(ctx: RequestContext, route: UpstreamRoute): Promise<void> {
      const { req, res } = ctx;
      if (res.destroyed) return Promise.resolve();
      const done = new Promise<void>((resolve) => res.once('close', () => resolve()));
      const call: WebCall = { ctx, route, settings, startedAt: process.hrtime.bigint() };
      webCalls.set(req, call);
      stripRequestHopByHop(req.headers, false);
      const headers = forwardedHeaders(req, ctx.clientAddress, ctx.https, ctx.requestId);
      const agent = route.url.protocol === 'https:' ? httpsAgent : httpAgent;
      try {
        proxy.web(req, res, { target: route.url, agent, headers }, (err: Error) => {
          failWeb(ctx, route, err);
        });
      } catch (err) {
        // http.request throws synchronously on what it refuses to send (e.g. a bad path byte).
        failWeb(ctx, route, err);
      }
      return done;
    },

    upgrade(req, socket, head, clientAddress, https, id): boolean {
      const route = matchUpstreamRoute(settings.routes, req.url ?? '/');
      if (route === null) return false;
      if (!isWebSocketUpgrade(req)) {
        endRaw(socket, 400, 'only WebSocket upgrades (GET with Upgrade: websocket) are proxied');
        return true;
      }
      const requestId = id ?? randomBytes(8).toString('hex');
      const call: WsCall = { route, settings, socket, upgraded: false, proxyReq: null };
      wsCalls.set(req, call);
      tunnels.add(socket);
      socket.once('close', () => {
        tunnels.delete(socket);
        // Before the handshake completed http-proxy-3 does not abort the upstream request itself.
        if (!call.upgraded) call.proxyReq?.destroy();
      });
      stripRequestHopByHop(req.headers, true);
      const headers = forwardedHeaders(req, clientAddress, https, requestId);
      const onError = (err: unknown): void => {
        const status = statusFor(err);
        log.warn(
          { requestId, upstream: route.origin, path: req.url, err: toError(err) },
          'upstream WebSocket failed',
        );
        if (!call.upgraded && socket.writable) endRaw(socket, status, describe(route, err));
        else socket.destroy();
      };
      try {
        // agent false: a WebSocket owns its connection for its whole life; nothing to pool.
        proxy.ws(req, socket, head, { target: route.url, agent: false, headers }, onError);
      } catch (err) {
        onError(err);
      }
      return true;
    },

    reconfigure(routes, connectTimeoutMs, timeoutMs): void {
      settings = makeSettings(routes, connectTimeoutMs, timeoutMs);
    },

    openTunnels: () => tunnels.size,

    close(): void {
      for (const socket of tunnels) socket.destroy();
      tunnels.clear();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };

  function failWeb(ctx: RequestContext, route: UpstreamRoute, err: unknown): void {
    const status = statusFor(err);
    const message = describe(route, err);
    if (ctx.res.destroyed) {
      // The client left first (its 499 is logged by the server); nothing to answer.
      ctx.error ??= message;
      return;
    }
    ctx.log.warn(
      { requestId: ctx.requestId, upstream: route.origin, path: ctx.req.url, err: toError(err) },
      'upstream request failed',
    );
    sendError(ctx, status, message);
  }
}

function makeSettings(
  routes: Readonly<Record<string, string>>,
  connectTimeoutMs: number,
  timeoutMs: number,
): Settings {
  return { routes: parseUpstreamRoutes(routes), connectTimeoutMs, timeoutMs };
}

/** 504 for our idle timeout, 502 for everything else an upstream can do wrong. */
function statusFor(err: unknown): 502 | 504 {
  return httpStatusOf(err) === 504 ? 504 : 502;
}

/**
 * How error bodies name an upstream: by its route prefix, never its address (error bodies never
 * show internal addresses; the log line has the origin and the errno).
 */
function upstreamName(route: UpstreamRoute): string {
  return `the upstream for ${route.prefix}`;
}

/** The error body: which upstream, and what happened in words an operator can act on. */
function describe(route: UpstreamRoute, err: unknown): string {
  if (isSidecarError(err)) return err.message;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const up = upstreamName(route);
  switch (code) {
    case 'ECONNREFUSED':
      return `${up} refused the connection (is it running? see proxy.routes)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${up}: host name not found (proxy.routes)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${up} is unreachable (${code})`;
    case 'ECONNRESET':
      return `${up} closed the connection without a response`;
    default:
      // Not err.message: Node's messages embed the upstream address.
      return `${up} failed (${code ?? toError(err).name})`;
  }
}

/** A plain-text answer on a raw (upgrade) socket, then close it. */
function endRaw(socket: Duplex, status: 400 | 502 | 504, message: string): void {
  const text = status === 400 ? 'Bad Request' : status === 502 ? 'Bad Gateway' : 'Gateway Timeout';
  const body = `${status} ${text}\n${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
}
