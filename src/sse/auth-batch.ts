/**
 * POST {sse.auth_batch_path} (default /askr/auth): authorizes every channel a page wants in one
 * request, with whatever credentials the page's fetch carries (session cookie, a Sanctum or
 * Passport bearer token, CSRF headers), and answers a signed grant the events endpoint and the
 * whisper route accept without asking PHP again until it expires (issue 12).
 *
 *   {"channels": [...], "socket_id"?} ─▶ private-/presence-: the app's auth route, ≤4 at once
 *                                      └▶ public: allowed, no check
 *   ◀─ 200 {"grant", "expires_at", "socket_id", "channels": {name: verdict}} + Set-Cookie askr_grant
 *
 * Invariant: a refused channel never fails the request (a bad name, one past
 * sse.max_channels_per_connection, or the app's refusal: each is that channel's verdict); only a
 * malformed body is a 400. The grant covers the allowed private-/presence- channels only (public
 * ones need no grant).
 */
import { ErrorCodes } from '../errors.ts';
import { httpStatusOfCode } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import { authorizeChannels, type ChannelAuthDeps } from './channel-auth.ts';
import { channelLimitsOf, isPrivateChannel, isSocketId, sortChannelList } from './channel-rules.ts';
import {
  commonCookiePath,
  grantSetCookie,
  newSocketId,
  signGrant,
  type GrantPayload,
} from './grants.ts';
import { readJsonObject } from './json-request.ts';
import type { PresenceMember } from './presence.ts';
import { answerPreflight, corsHeaders } from './stream-response.ts';

export interface AuthBatchDeps extends ChannelAuthDeps {
  /** sse.grant_secret, or the process's random fallback when it is empty. */
  grantSecret(): Buffer | string;
  onRejected?(reason: string): void;
  /** Clock (tests); default Date.now. */
  now?: () => number;
}

/** One channel's line in the answer. */
export type ChannelAnswer =
  { allowed: true; member?: PresenceMember } | { allowed: false; status: number; reason: string };

/** Largest request body: 32 channels of 128 bytes fit many times over. */
const MAX_BODY_BYTES = 64 * 1024;
/** Headers a cross-origin page may send (listed origins only, see sse.allowed_origins). */
const ALLOWED_HEADERS =
  'Content-Type, Authorization, X-CSRF-TOKEN, X-XSRF-TOKEN, X-Requested-With, X-Socket-ID';

interface BatchRequest {
  channels: string[];
  socketId: string | null;
}

function batchRequestOf(doc: Record<string, unknown>): BatchRequest | string {
  const { channels, socket_id: socketId } = doc;
  if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) {
    return '"channels" must be an array of channel names';
  }
  if (channels.length === 0) return 'no channel given: list them in "channels"';
  if (socketId !== undefined && socketId !== null) {
    if (typeof socketId !== 'string' || !isSocketId(socketId)) {
      return '"socket_id" must look like "1234.5678" (digits, a dot, digits)';
    }
  }
  return {
    channels: [...new Set(channels)],
    socketId: typeof socketId === 'string' ? socketId : null,
  };
}

export function createAuthBatchRoute(deps: AuthBatchDeps): ExtraRoute {
  return async (ctx: RequestContext): Promise<void> => {
    const { req, res } = ctx;
    const config = deps.config();
    ctx.kind = 'internal';
    const cors = corsHeaders(req, config.sse.allowed_origins);
    if (req.method === 'OPTIONS') {
      answerPreflight(res, cors, 'POST', ALLOWED_HEADERS);
      return;
    }
    if (req.method !== 'POST') {
      sendError(ctx, 405, 'channel authorization accepts POST only', {
        ...cors,
        allow: 'POST, OPTIONS',
      });
      return;
    }
    const body = await readJsonObject(req, MAX_BODY_BYTES, 'the auth request limit');
    if (!body.ok) {
      deps.onRejected?.(body.reason === 'too_large' ? 'body_too_large' : 'bad_request');
      sendError(ctx, body.status, body.message, {
        ...cors,
        ...(body.status === 413 ? { connection: 'close' } : {}),
      });
      return;
    }
    const parsed = batchRequestOf(body.doc);
    if (typeof parsed === 'string') {
      deps.onRejected?.('bad_channel');
      sendError(ctx, 400, parsed, cors);
      return;
    }
    // A list far beyond any page's needs is refused whole: per-channel answers to it would be a
    // large reply to an unauthenticated request.
    const listCap = 4 * config.sse.max_channels_per_connection;
    if (parsed.channels.length > listCap) {
      deps.onRejected?.('bad_channel');
      sendError(
        ctx,
        400,
        `${parsed.channels.length} channels asked; at most ${listCap} per request (4 × sse.max_channels_per_connection)`,
        cors,
      );
      return;
    }
    // Names and the count are per-channel verdicts: a page whose tabs want one channel too many
    // (or one bad name) keeps the others.
    const { kept, refused } = sortChannelList(parsed.channels, channelLimitsOf(config.sse));
    const refusals = new Map(refused.map((r) => [r.name, r.reason]));
    if (refused.length > 0) deps.onRejected?.('bad_channel'); // once per request, as a 400 was
    const socketId = parsed.socketId ?? newSocketId();
    const verdicts = await authorizeChannels(ctx, kept.filter(isPrivateChannel), socketId, deps);
    // No prototype: "__proto__" is a valid channel name (Pusher's charset).
    const answers = Object.create(null) as Record<string, ChannelAnswer>;
    const grant: GrantPayload = {
      v: 1,
      c: [],
      m: {},
      s: socketId,
      exp: (deps.now ?? Date.now)() + config.sse.grant_ttl,
    };
    for (const channel of parsed.channels) {
      const refusal = refusals.get(channel);
      if (refusal !== undefined) {
        answers[channel] = { allowed: false, status: 400, reason: refusal };
        continue;
      }
      const verdict = verdicts.get(channel) ?? { allowed: true };
      if (!verdict.allowed) {
        deps.onRejected?.(
          verdict.code === ErrorCodes.CHANNEL_FORBIDDEN ? 'auth_denied' : 'auth_failed',
        );
        answers[channel] = {
          allowed: false,
          status: httpStatusOfCode(verdict.code),
          reason: verdict.reason,
        };
        continue;
      }
      answers[channel] = verdict.member === undefined ? { allowed: true } : verdict;
      if (!isPrivateChannel(channel)) continue;
      grant.c.push(channel);
      if (verdict.member !== undefined) grant.m[channel] = verdict.member;
    }
    const token = signGrant(grant, deps.grantSecret());
    const reply = JSON.stringify({
      grant: token,
      expires_at: grant.exp,
      socket_id: socketId,
      channels: answers,
    });
    if (res.destroyed) return;
    const cookiePath = commonCookiePath([config.sse.events_path, config.sse.whisper_path]);
    res.writeHead(200, {
      ...cors,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(reply),
      'cache-control': 'no-store',
      'set-cookie': grantSetCookie(token, cookiePath, config.sse.grant_ttl, ctx.https),
      'x-request-id': ctx.requestId,
    });
    res.end(reply);
  };
}
