/**
 * Turns PHP responses into streams. A hold (`X-Askr-Subscribe: a, b`, or GRIP's `Grip-Hold: stream`
 * with `Grip-Channel`) ends the FastCGI request as soon as PHP returns (the worker is free) and
 * keeps the client subscribed in the hub, PHP's body first. `Accept: text/event-stream` without a
 * hold is passthrough: PHP's output streams unbuffered, and the worker stays busy (counted).
 */
import type { FcgiCall } from '../fastcgi/pool.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { cgiHeader, type CgiHead } from '../cgi/cgi-head.ts';
import { clientHeaders, collectBody, type PhpResponse } from '../cgi/php-response.ts';
import { pump } from '../cgi/pump.ts';
import type { ResponseInterceptor } from '../http/php-handler.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { Hub, SharedHistoryFn } from './hub.ts';
import { channelLimitsOf, channelListProblem } from './channel-rules.ts';
import {
  lastEventIdOf,
  reserveStream,
  splitChannelHeader,
  SSE_HEADERS,
  startStream,
} from './stream-response.ts';

export interface HoldDeps {
  hub: Hub;
  /** Cluster mode: the shared history a resume needs (see Hub.needsSharedHistory). */
  sharedHistory?: SharedHistoryFn;
  config: () => SidecarConfig;
  onPassthrough?(delta: 1 | -1): void;
  onRejected?(reason: string): void;
}

/** Headers of PHP's that the stream head replaces. */
const REPLACED = new Set(['content-type', 'cache-control', 'content-length']);

/** PHP's headers minus instructions and the replaced ones, then the SSE head. */
function streamHead(head: CgiHead, ctx: RequestContext): string[] {
  const out = clientHeaders(head, ctx.requestId, REPLACED, ctx.phpHeaders);
  for (const [k, v] of Object.entries(SSE_HEADERS)) out.push(k, v);
  return out;
}

export function createHoldInterceptor(deps: HoldDeps): ResponseInterceptor {
  return {
    async intercept(ctx, response, call): Promise<boolean> {
      const { head } = response;
      const subscribe = cgiHeader(head, 'x-askr-subscribe', true);
      const gripHold = cgiHeader(head, 'grip-hold', true);
      if (subscribe !== undefined || gripHold !== undefined) {
        if (gripHold !== undefined && gripHold.trim().toLowerCase() !== 'stream') {
          // GRIP "response" (long-polling) holds are not supported: answer PHP's response as is.
          ctx.log.warn(
            { requestId: ctx.requestId, gripHold },
            'Grip-Hold mode not supported (only "stream"); sending the response unheld',
          );
          return false;
        }
        await hold(
          ctx,
          response,
          call,
          subscribe ?? cgiHeader(head, 'grip-channel', true) ?? '',
          gripHold !== undefined,
          deps,
        );
        return true;
      }
      const accept = ctx.req.headers.accept ?? '';
      if (!accept.includes('text/event-stream')) return false;
      await passthrough(ctx, response, call, deps);
      return true;
    },
  };
}

async function hold(
  ctx: RequestContext,
  response: PhpResponse,
  call: FcgiCall,
  channelList: string,
  grip: boolean,
  deps: HoldDeps,
): Promise<void> {
  const config = deps.config();
  const { head } = response;
  ctx.kind = 'sse';
  // PHP's body becomes the first frames; it is bounded like any subscriber queue.
  const limit = config.sse.subscriber_queue_size;
  const initial = await collectBody(response, call, limit);
  if (initial === null) {
    call.abort();
    sendError(
      ctx,
      502,
      `the body of a held response exceeds ${limit} bytes (sse.subscriber_queue_size)`,
    );
    return;
  }
  // collectBody returned after END_REQUEST: the FPM worker is free from here on.
  const channels = splitChannelHeader(channelList);
  const problem =
    channels.length === 0
      ? `${grip ? 'Grip-Hold' : 'X-Askr-Subscribe'} names no channel`
      : channelListProblem(channels, channelLimitsOf(config.sse));
  if (problem !== null) {
    deps.onRejected?.('bad_hold');
    ctx.log.error(
      { requestId: ctx.requestId, channels: channelList },
      `invalid hold from PHP: ${problem}`,
    );
    sendError(ctx, 500, `the application asked for an invalid stream: ${problem}`);
    return;
  }
  if (reserveStream(ctx, deps) === null) return;
  const url = new URL(ctx.req.url ?? '/', 'http://sidecar.invalid');
  const lastEventId = lastEventIdOf(ctx.req, url);
  const shared = await deps.sharedHistory?.(channels, lastEventId);
  if (ctx.res.destroyed) return;
  const status = head.status >= 200 && head.status < 300 ? head.status : 200;
  startStream(ctx, status, streamHead(head, ctx), deps.hub, {
    channels,
    lastEventId,
    ...(shared === undefined ? {} : { shared }),
    clientIp: ctx.clientAddress,
    kind: 'hold',
    initial,
    // GRIP-published content reaches a GRIP hold as the raw bytes Pushpin would write.
    grip,
  });
}

async function passthrough(
  ctx: RequestContext,
  response: PhpResponse,
  call: FcgiCall,
  deps: HoldDeps,
): Promise<void> {
  ctx.kind = 'sse';
  const { head } = response;
  const headers =
    head.status === 200
      ? streamHead(head, ctx)
      : clientHeaders(head, ctx.requestId, undefined, ctx.phpHeaders);
  ctx.req.socket.setNoDelay(true);
  ctx.res.writeHead(head.status, head.statusText ?? undefined, headers);
  ctx.res.flushHeaders();
  deps.onPassthrough?.(1);
  try {
    await pump(ctx.res, response.rest, response.read, {
      sendTimeoutMs: deps.config().server.send_timeout,
    });
    await call.done;
    ctx.res.end();
  } finally {
    deps.onPassthrough?.(-1);
  }
}
