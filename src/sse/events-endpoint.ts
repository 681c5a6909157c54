/**
 * GET {sse.events_path}?channel=NAME (repeatable): the Askr-compatible events endpoint. Public
 * channels are subscribed at once; private-/presence- channels only after the app's auth route
 * allows each of them. Every refusal says which rule refused it. The stream's place (the
 * connection limits) is taken before the auth and held through it, so concurrent connects
 * cannot all pass the limit while their auth runs.
 */
import { randomBytes } from 'node:crypto';
import { channelLimitsOf, channelListProblem, isPrivateChannel } from './channel-rules.ts';
import { ErrorCodes } from '../errors.ts';
import { httpStatusOfCode } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import { authorizeChannel, type ChannelAuthDeps } from './channel-auth.ts';
import type { Hub, SharedHistoryFn } from './hub.ts';
import { memberFromAuthBody, type Presence, type PresenceMember } from './presence.ts';
import { corsHeaders, lastEventIdOf, reserveStream, SSE_HEADERS } from './stream-response.ts';

export interface EventsEndpointDeps extends ChannelAuthDeps {
  hub: Hub;
  /** Cluster mode: the shared history a resume needs (see Hub.needsSharedHistory). */
  sharedHistory?: SharedHistoryFn;
  presence: Presence;
  onRejected?(reason: string): void;
}

export function createEventsRoute(deps: EventsEndpointDeps): ExtraRoute {
  return async (ctx: RequestContext, url: URL): Promise<void> => {
    const { req, res } = ctx;
    const config = deps.config();
    ctx.kind = 'sse';
    const cors = corsHeaders(req, config.sse.allowed_origins);
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        ...cors,
        'access-control-allow-methods': 'GET',
        'access-control-allow-headers': 'Last-Event-ID, Authorization',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'GET') {
      sendError(ctx, 405, 'the events endpoint accepts GET only', { allow: 'GET, OPTIONS' });
      return;
    }
    const channels = [
      ...new Set(
        url.searchParams
          .getAll('channel')
          .flatMap((c) => c.split(','))
          .map((c) => c.trim())
          .filter((c) => c !== ''),
      ),
    ];
    const problem = channelListProblem(channels, channelLimitsOf(config.sse));
    if (problem !== null) {
      deps.onRejected?.('bad_channel');
      sendError(ctx, 400, problem, cors);
      return;
    }
    const slot = reserveStream(ctx, deps, cors);
    if (slot === null) return;
    try {
      await authorizeAndSubscribe(ctx, url, channels, cors, deps);
    } finally {
      slot.release(); // at once on a refusal; a no-op once the stream took the place
    }
  };
}

/** Authorizes each private/presence channel with the app, then starts the stream in the place
 * reserved for ctx.res. */
async function authorizeAndSubscribe(
  ctx: RequestContext,
  url: URL,
  channels: readonly string[],
  cors: Record<string, string>,
  deps: EventsEndpointDeps,
): Promise<void> {
  const { req, res } = ctx;
  const socketId = `${randomBytes(4).readUInt32BE()}.${randomBytes(4).readUInt32BE()}`;
  const presence: Array<[string, PresenceMember]> = [];
  for (const channel of channels.filter(isPrivateChannel)) {
    const result = await authorizeChannel(ctx, channel, socketId, deps);
    if (!result.allowed) {
      const denied = result.code === ErrorCodes.CHANNEL_FORBIDDEN;
      deps.onRejected?.(denied ? 'auth_denied' : 'auth_failed');
      sendError(ctx, httpStatusOfCode(result.code), result.reason, cors);
      return;
    }
    if (channel.startsWith('presence-')) {
      const member = memberFromAuthBody(result.body);
      if (typeof member === 'string') {
        deps.onRejected?.('auth_failed');
        ctx.log.error(
          { requestId: ctx.requestId, channel, problem: member },
          'bad presence auth response',
        );
        sendError(ctx, 502, `cannot join presence channel "${channel}": ${member}`, cors);
        return;
      }
      presence.push([channel, member]);
    }
  }
  const lastEventId = lastEventIdOf(req, url);
  const shared = await deps.sharedHistory?.(channels, lastEventId);
  // Join before subscribing: the others hear the join (in a cluster, once it has come back
  // through the bus), this stream gets the member list instead.
  for (const [channel, member] of presence) await deps.presence.join(channel, member);
  const leaveAll = (): void => {
    for (const [channel, member] of presence) deps.presence.leave(channel, member.user_id);
  };
  if (res.destroyed) {
    leaveAll();
    return;
  }
  if (presence.length > 0) res.once('close', leaveAll);
  const initial =
    presence.length === 0
      ? undefined
      : Buffer.concat(presence.map(([channel]) => deps.presence.membersFrame(channel)));
  res.writeHead(200, { ...SSE_HEADERS, ...cors, 'x-request-id': ctx.requestId });
  req.socket.setNoDelay(true);
  req.socket.setKeepAlive(true, 60_000);
  deps.hub.subscribe({
    sink: res,
    channels,
    lastEventId,
    clientIp: ctx.clientAddress,
    kind: 'events',
    ...(shared === undefined ? {} : { shared }),
    ...(initial === undefined ? {} : { initial }),
  });
}
