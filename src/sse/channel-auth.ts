/**
 * Authorization of private-/presence- channels for the events endpoint: an internal FastCGI POST to
 * the app's auth route in Laravel's shape (`channel_name=…&socket_id=…`, the client's cookies,
 * Authorization and CSRF headers forwarded). A 2xx allows; anything else denies. The app's own
 * rules (routes/channels.php) therefore decide, unchanged.
 */
import type { FcgiPool } from '../fastcgi/pool.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { buildCgiParams, type CgiServerInfo } from '../http/cgi-params.ts';
import { ErrorCodes } from '../errors.ts';
import { phpInternalRequest } from '../cgi/php-internal.ts';
import { cgiRequestInfo, headerPairs, type RequestContext } from '../http/request-context.ts';
import { frontControllerRoute } from '../http/route-resolver.ts';

/** Client headers that carry identity; everything else stays out of the internal request. */
const FORWARDED = new Set([
  'cookie',
  'authorization',
  'x-csrf-token',
  'x-xsrf-token',
  'user-agent',
  'host',
  'accept-language',
  'x-requested-with',
]);

export type AuthResult =
  | { allowed: true; body: Buffer }
  | {
      allowed: false;
      /** CHANNEL_FORBIDDEN: the app said no; UPSTREAM_RESPONSE: the auth request failed. */
      code: typeof ErrorCodes.CHANNEL_FORBIDDEN | typeof ErrorCodes.UPSTREAM_RESPONSE;
      reason: string;
    };

export interface ChannelAuthDeps {
  pool: FcgiPool;
  config: () => SidecarConfig;
  serverInfo: CgiServerInfo;
}

/** Asks the app whether this client may listen to `channel`. Never throws: FPM errors deny (502). */
export async function authorizeChannel(
  ctx: RequestContext,
  channel: string,
  socketId: string,
  deps: ChannelAuthDeps,
): Promise<AuthResult> {
  const config = deps.config();
  const body = Buffer.from(
    new URLSearchParams({ channel_name: channel, socket_id: socketId }).toString(),
  );
  const headers = headerPairs(ctx.req.rawHeaders).filter(([name]) =>
    FORWARDED.has(name.toLowerCase()),
  );
  headers.push(
    ['Content-Type', 'application/x-www-form-urlencoded'],
    ['Accept', 'application/json'],
  );
  const params = buildCgiParams(
    cgiRequestInfo(ctx, {
      method: 'POST',
      rawTarget: config.sse.auth_path,
      query: '',
      headers,
      contentLength: body.length,
    }),
    frontControllerRoute(config.server.root, config.server.index),
    deps.serverInfo,
    [['REQUEST_ID', ctx.requestId]],
  );
  try {
    const res = await phpInternalRequest(deps.pool, {
      params,
      body,
      timeoutMs: config.fastcgi.read_timeout,
      maxBodyBytes: 64 * 1024,
    });
    if (res.stderr !== '')
      ctx.log.warn(
        { requestId: ctx.requestId, php: res.stderr.trim() },
        'PHP stderr (channel auth)',
      );
    if (res.status >= 200 && res.status < 300) return { allowed: true, body: res.body };
    return {
      allowed: false,
      code: ErrorCodes.CHANNEL_FORBIDDEN,
      reason: `not authorized for channel "${channel}" (the app answered ${res.status})`,
    };
  } catch (err) {
    ctx.log.error(
      { requestId: ctx.requestId, channel, err: (err as Error).message },
      'channel authorization request failed',
    );
    return {
      allowed: false,
      code: ErrorCodes.UPSTREAM_RESPONSE,
      reason: `cannot authorize channel "${channel}": the app's auth route failed`,
    };
  }
}
