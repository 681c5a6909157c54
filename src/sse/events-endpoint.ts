/**
 * GET {sse.events_path}?channel=NAME (repeatable)[&grant=TOKEN][&socket_id=ID]: the Askr events
 * endpoint. The grant comes from X-Askr-Grant, else `grant`, else the askr_grant cookie. Public
 * channels are subscribed at once; a private-/presence- channel needs either a valid grant
 * covering it (minted by POST /askr/auth: no PHP request, the presence member comes from the
 * grant) or the app's auth route allowing it. An invalid or expired grant is a 401 (the client
 * fetches a new one); a stream opened with a grant ends when the grant expires. Every refusal
 * says which rule refused it. The stream's place (the connection limits) is taken before the auth
 * and held through it, so concurrent connects cannot all pass the limit while it runs. The first
 * frame after `retry:` is `askr:connected`: the stream's socket id and the hub's position, from
 * which a client that has no event yet resumes without missing one.
 */
import {
  channelLimitsOf,
  channelListProblem,
  isPrivateChannel,
  isSocketId,
} from './channel-rules.ts';
import { ErrorCodes } from '../errors.ts';
import { httpStatusOfCode } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import { authorizeChannels, type ChannelAuthDeps } from './channel-auth.ts';
import {
  grantCovers,
  grantHeaderOf,
  grantInvalidMessage,
  newSocketId,
  requestGrant,
  type GrantPayload,
} from './grants.ts';
import type { Hub, SharedHistoryFn } from './hub.ts';
import type { Presence, PresenceMember } from './presence.ts';
import { formatEventId } from './event-history.ts';
import { encodeFrame } from './sse-encoder.ts';
import {
  answerPreflight,
  corsHeaders,
  lastEventIdOf,
  reserveStream,
  SSE_HEADERS,
  startStream,
} from './stream-response.ts';

export interface EventsEndpointDeps extends ChannelAuthDeps {
  hub: Hub;
  /** Cluster mode: the shared history a resume needs (see Hub.needsSharedHistory). */
  sharedHistory?: SharedHistoryFn;
  presence: Presence;
  /** sse.grant_secret, or the process's random fallback when it is empty. */
  grantSecret(): Buffer | string;
  onRejected?(reason: string): void;
  /** Clock (tests); default Date.now. */
  now?: () => number;
}

/** What a request brings besides its channels: a verified grant (or none), its socket id. */
interface StreamAccess {
  grant: GrantPayload | null;
  /** The grant was sent on purpose (X-Askr-Grant or `grant`), not the ambient cookie. */
  explicit: boolean;
  socketId: string;
}

/** Headers a cross-origin page may send (listed origins only, see sse.allowed_origins). */
const ALLOWED_HEADERS = 'Last-Event-ID, Authorization, X-Askr-Grant';

export function createEventsRoute(deps: EventsEndpointDeps): ExtraRoute {
  return async (ctx: RequestContext, url: URL): Promise<void> => {
    const { req, res } = ctx;
    const config = deps.config();
    ctx.kind = 'sse';
    const cors = corsHeaders(req, config.sse.allowed_origins);
    if (req.method === 'OPTIONS') {
      answerPreflight(res, cors, 'GET', ALLOWED_HEADERS);
      return;
    }
    if (req.method !== 'GET') {
      sendError(ctx, 405, 'the events endpoint accepts GET only', { allow: 'GET, OPTIONS' });
      return;
    }
    // Repeated parameters only: ',' is a legal channel character (Pusher's charset).
    const channels = [
      ...new Set(
        url.searchParams
          .getAll('channel')
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
    const access = accessOf(ctx, url, channels, cors, deps);
    if (access === null) return;
    const slot = reserveStream(ctx, deps, cors);
    if (slot === null) return;
    try {
      await authorizeAndSubscribe(ctx, url, channels, access, cors, deps);
    } finally {
      slot.release(); // at once on a refusal; a no-op once the stream took the place
    }
  };
}

/**
 * The request's grant (X-Askr-Grant, else the `grant` parameter, else the askr_grant cookie) and
 * socket id, or null after answering 400/401. A cookie grant that does not verify is ignored by a
 * stream of public channels only: it needs no grant, and a stale cookie must not take it down.
 * Socket id: the grant's when it opens one of the channels (whispers and toOthers() name the
 * grant's); else a `socket_id` parameter (checked whenever given); else an explicit grant's; else
 * a new one. An ambient cookie grant never names the socket of a stream it opens nothing on: it
 * may be another tab's, whose socket id this stream must not take.
 */
function accessOf(
  ctx: RequestContext,
  url: URL,
  channels: readonly string[],
  cors: Record<string, string>,
  deps: EventsEndpointDeps,
): StreamAccess | null {
  const config = deps.config();
  const header = grantHeaderOf(ctx.req.headers);
  const found = requestGrant(
    header ?? url.searchParams.get('grant'),
    ctx.req.headers.cookie,
    header === null ? 'param' : 'header',
    deps.grantSecret(),
    (deps.now ?? Date.now)(),
  );
  const explicit = found !== null && found.source !== 'cookie';
  let grant: GrantPayload | null = null;
  const check = found?.check;
  if (check?.ok === true) grant = check.grant;
  else if (check !== undefined && (explicit || channels.some(isPrivateChannel))) {
    deps.onRejected?.('grant_invalid');
    ctx.log.debug(
      { requestId: ctx.requestId, source: found?.source, problem: check.reason },
      'grant refused',
    );
    sendError(ctx, 401, grantInvalidMessage(config.sse.auth_batch_path), cors);
    return null;
  }
  const param = url.searchParams.get('socket_id');
  if (param !== null && !isSocketId(param)) {
    deps.onRejected?.('bad_request');
    sendError(ctx, 400, 'socket_id must look like "1234.5678" (digits, a dot, digits)', cors);
    return null;
  }
  const used = grant !== null && channels.some((c) => isPrivateChannel(c) && grantCovers(grant, c));
  const socketId =
    (used ? grant?.s : null) ?? param ?? (explicit ? grant?.s : null) ?? newSocketId();
  return { grant, explicit, socketId };
}

/** Authorizes each private/presence channel (grant, else the app), then starts the stream in
 * the place reserved for ctx.res. */
async function authorizeAndSubscribe(
  ctx: RequestContext,
  url: URL,
  channels: readonly string[],
  access: StreamAccess,
  cors: Record<string, string>,
  deps: EventsEndpointDeps,
): Promise<void> {
  const { req, res } = ctx;
  const { grant, socketId } = access;
  const presence: Array<[string, PresenceMember]> = [];
  const askApp: string[] = [];
  let granted = 0;
  for (const channel of channels.filter(isPrivateChannel)) {
    if (grant === null || !grantCovers(grant, channel)) {
      askApp.push(channel);
      continue;
    }
    granted++;
    const member = grant.m[channel];
    if (member !== undefined) presence.push([channel, member]);
  }
  const verdicts = await authorizeChannels(ctx, askApp, socketId, deps);
  for (const [channel, verdict] of verdicts) {
    if (!verdict.allowed) {
      const denied = verdict.code === ErrorCodes.CHANNEL_FORBIDDEN;
      deps.onRejected?.(denied ? 'auth_denied' : 'auth_failed');
      sendError(ctx, httpStatusOfCode(verdict.code), verdict.reason, cors);
      return;
    }
    if (verdict.member !== undefined) presence.push([channel, verdict.member]);
  }
  // A grant sent on purpose (header, URL) always bounds the stream (the client refreshes it); a
  // cookie grant only when it allowed a channel here.
  const expiresAt = grant !== null && (granted > 0 || access.explicit) ? grant.exp : null;
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
  // The hub's position as the stream starts (nothing is awaited from here to subscribe()): a
  // client with no event yet resumes from it, and gets what was published after it.
  const position = formatEventId(deps.hub.epoch, deps.hub.seq);
  const connected = encodeFrame({
    event: 'askr:connected',
    data: JSON.stringify({ socket_id: socketId, grant_expires_at: expiresAt, position }),
  });
  const initial = Buffer.concat([
    connected,
    ...presence.map(([channel]) => deps.presence.membersFrame(channel)),
  ]);
  const head = { ...SSE_HEADERS, ...cors, 'x-request-id': ctx.requestId };
  const sink = startStream(ctx, 200, head, deps.hub, {
    channels,
    lastEventId,
    clientIp: ctx.clientAddress,
    kind: 'events',
    socketId,
    initial,
    ...(shared === undefined ? {} : { shared }),
    ...(expiresAt === null ? {} : { expiresAt }),
  });
  // Nothing was awaited since the destroyed check above: the stream's close is the leave.
  if (presence.length > 0) sink.once('close', leaveAll);
}
