/**
 * POST {sse.whisper_path} (default /askr/whisper): client events (Echo's whisper, Pusher's
 * `client-*` events) relayed by the sidecar to the other streams of a private-/presence- channel.
 * The sender proves it may use the channel with a grant covering it (X-Askr-Grant or the
 * askr_grant cookie); PHP is not asked. The sender's socket id (the grant's) is excluded, so it
 * never hears its own whisper. Bounded: sse.whisper_max_size per body, sse.whisper_rate per second
 * per socket id.
 *
 *   {"channel", "event", "data", "socket_id"?} ─▶ grant covers channel? ─▶ rate ok? ─▶ publish
 *        event `client-<name>`, data JSON(data), socket = grant's s ─▶ 202 {"delivered": n}
 */
import type { SidecarConfig } from '../config/schema.ts';
import { isSidecarError } from '../errors.ts';
import { httpStatusOf } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import { channelNameProblem, isPrivateChannel } from './channel-rules.ts';
import { grantCovers, grantHeaderOf, grantInvalidMessage, requestGrant } from './grants.ts';
import type { Hub, PublishFn } from './hub.ts';
import { readJsonObject } from './json-request.ts';
import { answerPreflight, corsHeaders } from './stream-response.ts';

export interface WhisperDeps {
  hub: Hub;
  /** Cluster mode: publishes through the bus; default Hub.publish. */
  publish?: PublishFn;
  config: () => SidecarConfig;
  /** sse.grant_secret, or the process's random fallback when it is empty. */
  grantSecret(): Buffer | string;
  onRejected?(reason: string): void;
  /** Clock (tests); default Date.now. */
  now?: () => number;
}

/** Pusher's limit on event names. */
const MAX_EVENT_CHARS = 200;
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const EVENT_FORBIDDEN = /[\u0000-\u001f\u007f]/;
const ALLOWED_HEADERS = 'Content-Type, X-Askr-Grant, X-Socket-ID, X-Requested-With';

/**
 * A token bucket per socket id: `ratePerSecond` tokens, refilled continuously. Buckets that are
 * full again carry no information and are dropped when the map has doubled since the last sweep,
 * so memory follows the senders of the last second, not every socket id ever seen.
 */
export class WhisperRateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  #sweepAt = 1024;

  /** Takes a token; returns 0 when allowed, else the seconds to wait (Retry-After). */
  take(key: string, ratePerSecond: number, nowMs: number): number {
    const bucket = this.#buckets.get(key);
    const tokens =
      bucket === undefined
        ? ratePerSecond
        : Math.min(ratePerSecond, bucket.tokens + ((nowMs - bucket.at) / 1000) * ratePerSecond);
    if (tokens < 1) return Math.max(1, Math.ceil((1 - tokens) / ratePerSecond));
    this.#buckets.set(key, { tokens: tokens - 1, at: nowMs });
    if (this.#buckets.size >= this.#sweepAt) this.#sweep(ratePerSecond, nowMs);
    return 0;
  }

  get size(): number {
    return this.#buckets.size;
  }

  #sweep(ratePerSecond: number, nowMs: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + ((nowMs - b.at) / 1000) * ratePerSecond >= ratePerSecond) {
        this.#buckets.delete(key);
      }
    }
    this.#sweepAt = Math.max(1024, this.#buckets.size * 2);
  }
}

interface Whisper {
  channel: string;
  event: string;
  data: string;
  socketId: string | null;
}

function whisperOf(doc: Record<string, unknown>, maxNameLength: number): Whisper | string {
  const { channel, event, socket_id: socketId } = doc;
  if (typeof channel !== 'string') return '"channel" must be a channel name';
  const problem = channelNameProblem(channel, maxNameLength);
  if (problem !== null) return problem;
  if (typeof event !== 'string' || event === '' || event === 'client-') {
    return '"event" must be a non-empty event name';
  }
  const name = event.startsWith('client-') ? event : `client-${event}`;
  if (name.length > MAX_EVENT_CHARS || EVENT_FORBIDDEN.test(name)) {
    return `"event" must be at most ${MAX_EVENT_CHARS} characters, without control characters`;
  }
  if (socketId !== undefined && socketId !== null && typeof socketId !== 'string') {
    return '"socket_id" must be a string';
  }
  return {
    channel,
    event: name,
    // Absent data is sent as null: Echo's whisper(name) without a payload still reaches listeners.
    data: JSON.stringify(doc['data'] ?? null),
    socketId: typeof socketId === 'string' ? socketId : null,
  };
}

export function createWhisperRoute(deps: WhisperDeps): ExtraRoute {
  const limiter = new WhisperRateLimiter();
  const now = deps.now ?? Date.now;
  return async (ctx: RequestContext): Promise<void> => {
    const { req, res } = ctx;
    const config = deps.config();
    ctx.kind = 'publish';
    const cors = corsHeaders(req, config.sse.allowed_origins);
    if (req.method === 'OPTIONS') {
      answerPreflight(res, cors, 'POST', ALLOWED_HEADERS);
      return;
    }
    if (req.method !== 'POST') {
      sendError(ctx, 405, 'whisper with POST', { ...cors, allow: 'POST, OPTIONS' });
      return;
    }
    const reject = (status: number, reason: string, message: string, extra = {}): void => {
      deps.onRejected?.(reason);
      sendError(ctx, status, message, { ...cors, ...extra });
    };
    const body = await readJsonObject(req, config.sse.whisper_max_size, 'sse.whisper_max_size');
    if (!body.ok) {
      const tooLarge = body.reason === 'too_large';
      reject(
        body.status,
        tooLarge ? 'whisper_too_large' : 'whisper_bad_request',
        body.message,
        tooLarge ? { connection: 'close' } : {},
      );
      return;
    }
    const whisper = whisperOf(body.doc, config.sse.max_channel_name_length);
    if (typeof whisper === 'string') {
      reject(400, 'whisper_bad_request', whisper);
      return;
    }
    const found = requestGrant(
      grantHeaderOf(req.headers),
      req.headers.cookie,
      'header',
      deps.grantSecret(),
      now(),
    );
    if (found === null || !found.check.ok) {
      reject(
        401,
        'grant_invalid',
        found === null
          ? `a grant is required (X-Askr-Grant or the askr_grant cookie): get one from ${config.sse.auth_batch_path}`
          : grantInvalidMessage(config.sse.auth_batch_path),
      );
      return;
    }
    const { grant } = found.check;
    if (!isPrivateChannel(whisper.channel)) {
      reject(403, 'whisper_forbidden', 'whispers go to private- and presence- channels only');
      return;
    }
    if (!grantCovers(grant, whisper.channel)) {
      reject(403, 'whisper_forbidden', `the grant does not cover channel "${whisper.channel}"`);
      return;
    }
    // The grant's socket id is the sender's: a whisper cannot exclude someone else's stream.
    if (whisper.socketId !== null && grant.s !== null && whisper.socketId !== grant.s) {
      reject(403, 'whisper_forbidden', '"socket_id" is not the socket id of the grant');
      return;
    }
    const sender = grant.s ?? whisper.socketId;
    const wait = limiter.take(sender ?? `ip:${ctx.clientAddress}`, config.sse.whisper_rate, now());
    if (wait > 0) {
      reject(
        429,
        'whisper_rate',
        `more than ${config.sse.whisper_rate} whispers per second from this socket (sse.whisper_rate)`,
        { 'retry-after': String(wait) },
      );
      return;
    }
    try {
      const publish = deps.publish ?? ((input) => Promise.resolve(deps.hub.publish(input)));
      const result = await publish({
        channels: [whisper.channel],
        event: whisper.event,
        data: Buffer.from(whisper.data),
        ingress: 'whisper',
        ...(sender === null ? {} : { socket: sender }),
      });
      const reply = JSON.stringify({ delivered: result.subscribers });
      res.writeHead(202, {
        ...cors,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(reply),
        'cache-control': 'no-store',
        'x-request-id': ctx.requestId,
      });
      res.end(reply);
    } catch (err) {
      if (isSidecarError(err) && httpStatusOf(err) === 400) {
        reject(400, 'whisper_bad_request', err.message);
        return;
      }
      throw err;
    }
  };
}
