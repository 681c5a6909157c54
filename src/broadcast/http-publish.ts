/**
 * POST {sse.publish_path}: publishing over HTTP for publishers that are not PHP on this host.
 * Off unless `sse.publish_token` is set; the bearer token is compared in constant time.
 *
 * Two body shapes:
 *   POST /askr/publish?channel=orders&event=shipped[&socket=1.2]    raw body = the event data
 *   POST /askr/publish  (Content-Type: application/json)
 *     {"channel": "orders" | "channels": [...], "data": "…", "event"?: "…", "id"?: "…",
 *      "close"?: bool, "socket"?: "1234.5678"}
 * `socket` is the publisher's socket id (Laravel's toOthers()): the stream with that socket id
 * does not get the event; it is never part of the data.
 */
import type { SidecarConfig } from '../config/schema.ts';
import { isSidecarError } from '../errors.ts';
import { httpStatusOf } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import type { Hub, PublishFn } from '../sse/hub.ts';
import {
  channelLimitsOf,
  channelListProblem,
  isSocketId,
  SOCKET_ID_FORMAT,
} from '../sse/channel-rules.ts';
import { secretMatches } from './secret-match.ts';

export interface HttpPublishDeps {
  hub: Hub;
  /** Cluster mode: publishes through the bus; default Hub.publish. */
  publish?: PublishFn;
  config: () => SidecarConfig;
  onRejected?(reason: string): void;
}

/** Constant-time comparison of the Authorization header with "Bearer <token>". */
export function bearerMatches(header: string | undefined, token: string): boolean {
  return token !== '' && secretMatches(header, `Bearer ${token}`);
}

interface Parsed {
  channels: string[];
  data: Buffer;
  event?: string;
  id?: string;
  close: boolean;
  socket?: string;
}

function parseJsonBody(body: Buffer): Parsed | string {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the body is not valid JSON (send raw data with ?channel=NAME instead)';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    return 'the JSON body must be an object';
  const o = doc as Record<string, unknown>;
  const channels: string[] = [];
  if (typeof o['channel'] === 'string') channels.push(o['channel']);
  if (Array.isArray(o['channels'])) {
    for (const c of o['channels']) {
      if (typeof c !== 'string') return '"channels" must be an array of strings';
      channels.push(c);
    }
  }
  const data = o['data'];
  if (typeof data !== 'string') return '"data" must be a string (JSON-encode structured payloads)';
  for (const key of ['event', 'id', 'socket'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'string') return `"${key}" must be a string`;
  }
  if (o['close'] !== undefined && typeof o['close'] !== 'boolean')
    return '"close" must be true or false';
  return {
    channels: [...new Set(channels)],
    data: Buffer.from(data),
    ...(typeof o['event'] === 'string' ? { event: o['event'] } : {}),
    ...(typeof o['id'] === 'string' ? { id: o['id'] } : {}),
    close: o['close'] === true,
    ...(typeof o['socket'] === 'string' ? { socket: o['socket'] } : {}),
  };
}

export function createPublishRoute(deps: HttpPublishDeps): ExtraRoute {
  return async (ctx: RequestContext, url: URL): Promise<void> => {
    const config = deps.config();
    const { req, res } = ctx;
    ctx.kind = 'publish';
    if (config.sse.publish_token === '') {
      sendError(ctx, 404, 'HTTP publishing is off (set sse.publish_token to enable it)');
      return;
    }
    if (req.method !== 'POST') {
      sendError(ctx, 405, 'publish with POST', { allow: 'POST' });
      return;
    }
    if (!bearerMatches(req.headers.authorization, config.sse.publish_token)) {
      deps.onRejected?.('publish_unauthorized');
      sendError(ctx, 401, 'missing or wrong bearer token', {
        'www-authenticate': 'Bearer realm="askr-publish"',
      });
      return;
    }
    const max = config.broadcast.max_datagram_size;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) {
        deps.onRejected?.('publish_too_large');
        sendError(ctx, 413, `publish body exceeds ${max} bytes (broadcast.max_datagram_size)`, {
          connection: 'close',
        });
        return;
      }
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks, size);
    let parsed: Parsed | string;
    if (url.searchParams.has('channel')) {
      const event = url.searchParams.get('event');
      const id = url.searchParams.get('id');
      const socket = url.searchParams.get('socket');
      parsed = {
        channels: [...new Set(url.searchParams.getAll('channel'))],
        data: body,
        ...(event === null ? {} : { event }),
        ...(id === null ? {} : { id }),
        close: url.searchParams.get('close') === 'true',
        ...(socket === null ? {} : { socket }),
      };
    } else if ((req.headers['content-type'] ?? '').startsWith('application/json')) {
      parsed = parseJsonBody(body);
    } else {
      parsed =
        'name the channel with ?channel=NAME, or send a JSON body (Content-Type: application/json)';
    }
    if (typeof parsed === 'string') {
      deps.onRejected?.('publish_bad_request');
      sendError(ctx, 400, parsed);
      return;
    }
    if (parsed.socket !== undefined && !isSocketId(parsed.socket)) {
      deps.onRejected?.('publish_bad_request');
      sendError(ctx, 400, `"socket" must be ${SOCKET_ID_FORMAT}`);
      return;
    }
    const problem = channelListProblem(parsed.channels, channelLimitsOf(config.sse));
    if (problem !== null) {
      deps.onRejected?.('publish_bad_channel');
      sendError(ctx, 400, problem.replace('?channel=NAME (repeatable)', '"channel" or "channels"'));
      return;
    }
    try {
      const publish = deps.publish ?? ((input) => Promise.resolve(deps.hub.publish(input)));
      const result = await publish({
        channels: parsed.channels,
        data: parsed.data,
        ...(parsed.event === undefined ? {} : { event: parsed.event }),
        ...(parsed.id === undefined ? {} : { publisherId: parsed.id }),
        close: parsed.close,
        ...(parsed.socket === undefined ? {} : { socket: parsed.socket }),
        ingress: 'http',
      });
      const reply = JSON.stringify({
        id: result.id,
        subscribers: result.subscribers,
        closed: result.closed,
        duplicate: result.id === null && parsed.id !== undefined,
      });
      res.writeHead(202, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(reply),
        'x-request-id': ctx.requestId,
      });
      res.end(reply);
    } catch (err) {
      if (isSidecarError(err) && httpStatusOf(err) === 400) {
        deps.onRejected?.('publish_bad_request');
        sendError(ctx, 400, err.message);
        return;
      }
      throw err;
    }
  };
}
