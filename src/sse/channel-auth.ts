/**
 * Authorization of private-/presence- channels, the one place that calls the app's auth route
 * (events endpoint, POST /askr/auth): an internal FastCGI POST in Laravel's shape
 * (`channel_name=…&socket_id=…`, the client's cookies, Authorization and CSRF headers forwarded).
 * A 2xx allows; anything else denies. The app's own rules (routes/channels.php) decide, unchanged.
 * Several channels are asked at most AUTH_CONCURRENCY at a time, so one client holds few workers.
 */
import type { FcgiPool } from '../fastcgi/pool.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { buildCgiParams, type CgiServerInfo } from '../http/cgi-params.ts';
import { ErrorCodes } from '../errors.ts';
import { phpInternalRequest } from '../cgi/php-internal.ts';
import { cgiRequestInfo, headerPairs, type RequestContext } from '../http/request-context.ts';
import { frontControllerRoute } from '../http/route-resolver.ts';
import { memberFromAuthBody, type PresenceMember } from './presence.ts';

/** Auth requests one client request runs at once (each holds a PHP worker while it runs). */
export const AUTH_CONCURRENCY = 4;

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

/** One channel's answer: allowed (with its member on a presence channel) or refused, and why. */
export type ChannelVerdict =
  | { allowed: true; member?: PresenceMember }
  | {
      allowed: false;
      code: typeof ErrorCodes.CHANNEL_FORBIDDEN | typeof ErrorCodes.UPSTREAM_RESPONSE;
      reason: string;
    };

/**
 * Asks the app about each channel (private-/presence- only: callers pass those), at most
 * AUTH_CONCURRENCY at once, and reads presence members. A presence answer without a usable
 * channel_data refuses that channel (UPSTREAM_RESPONSE). Never throws; the map keeps the order of
 * `channels`.
 */
export async function authorizeChannels(
  ctx: RequestContext,
  channels: readonly string[],
  socketId: string,
  deps: ChannelAuthDeps,
): Promise<Map<string, ChannelVerdict>> {
  const verdicts = new Map<string, ChannelVerdict>();
  // Placeholders, replaced as answers come: the map iterates in the order of `channels`.
  for (const channel of channels)
    verdicts.set(channel, { allowed: false, code: ErrorCodes.UPSTREAM_RESPONSE, reason: '' });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < channels.length) {
      const channel = channels[next++] as string;
      verdicts.set(
        channel,
        verdictOf(ctx, channel, await authorizeChannel(ctx, channel, socketId, deps)),
      );
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(AUTH_CONCURRENCY, channels.length) }, () => worker()),
  );
  return verdicts;
}

function verdictOf(ctx: RequestContext, channel: string, result: AuthResult): ChannelVerdict {
  if (!result.allowed) return result;
  if (!channel.startsWith('presence-')) return { allowed: true };
  const member = memberFromAuthBody(result.body);
  if (typeof member !== 'string') return { allowed: true, member };
  ctx.log.error(
    { requestId: ctx.requestId, channel, problem: member },
    'bad presence auth response',
  );
  return {
    allowed: false,
    code: ErrorCodes.UPSTREAM_RESPONSE,
    reason: `cannot join presence channel "${channel}": ${member}`,
  };
}
