/**
 * Pushpin's publish API on the admin listener: `POST /publish/` (and `/publish`), so that
 * @fanoutio/grip's Publisher (and the other GRIP publishers) work with `control_uri` pointed at
 * `metrics.listen` and no other change. Off (404 naming the keys) until [grip] has a key or Basic
 * credentials (grip-auth.ts). Answers as Pushpin does: 200 `Published` (text/plain, or
 * `{"message": "Published"}` for Accept: application/json), 400 `Invalid format: …`, 405, 406.
 *
 *   body ─▶ parsePublishBody (grip-items.ts) ─▶ each item ─▶ GripSequencer (id, prev-id)
 *        ─▶ ready items, in order ─▶ PublishFn (hub, or the cluster bus), ingress "grip":
 *             GRIP holds get the http-stream content as raw bytes, other streams an event
 *
 * Invariants: a request is validated whole before anything of it is published; items that
 * wait for their prev-id are published by one timer (unref'd), never by a request; nothing a
 * client sends reaches a log field (messages are ours).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/schema.ts';
import { toError } from '../errors.ts';
import { RateLimitedLog } from '../observability/rate-limited-log.ts';
import { channelLimitsOf } from '../sse/channel-rules.ts';
import type { PublishFn, PublishInput } from '../sse/hub.ts';
import type { GripAuth } from './grip-auth.ts';
import { parsePublishBody, type GripItem, type IgnoredFormat } from './grip-items.ts';
import { GripSequencer, type Ready, type SequencedItem } from './grip-sequencer.ts';

/** What became of an item (askr_grip_items_total{outcome}). */
export type GripItemOutcome = 'sent' | 'reordered' | 'expired' | 'duplicate' | 'dropped' | 'noop';

export interface GripHooks {
  /** A refused request (askr_rejected_requests_total{reason}). */
  onRejected?(reason: string): void;
  onItem?(outcome: GripItemOutcome): void;
  /** A format or field of an item that the sidecar ignored. */
  onIgnored?(what: IgnoredFormat): void;
}

export interface PushpinPublishDeps {
  /** The hub's publish, or the cluster bus's. */
  publish: PublishFn;
  config: () => SidecarConfig;
  /** The [grip] auth of the running config (rebuilt at reload). */
  auth: () => GripAuth;
  logger: Logger;
  hooks?: GripHooks;
  /** Clock of the sequencer, ms (tests); default Date.now. */
  now?: () => number;
}

export interface PushpinPublish {
  /** The admin listener's handler for /publish/ and /publish (any method: it answers 405). */
  readonly handle: (req: IncomingMessage, res: ServerResponse) => void;
  /** Stops the timer of waiting items (they are dropped, as Pushpin drops them on exit). */
  close(): void;
}

/** The paths Pushpin's publish API answers on (Pushpin strips one trailing slash). */
export const PUBLISH_PATHS = ['/publish/', '/publish'] as const;

interface Queued extends SequencedItem {
  readonly grip: GripItem;
}

const NOT_ACCEPTABLE = 'Not Acceptable. Supported formats are text/plain and application/json.';

export function createPushpinPublish(deps: PushpinPublishDeps): PushpinPublish {
  const { hooks = {}, logger } = deps;
  const now = deps.now ?? Date.now;
  const sequencer = new GripSequencer<Queued>(() => {
    const grip = deps.config().grip;
    return {
      waitMs: grip.message_wait,
      idCacheTtlMs: grip.id_cache_ttl,
      maxPendingBytes: grip.max_pending_size,
    };
  });
  const ignoredLog = new RateLimitedLog(logger, 'warn', 60_000);
  const failedLog = new RateLimitedLog(logger, 'error', 10_000);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  /** Publishes ready items in order (their publish calls are issued in this order). */
  const publishReady = (ready: Array<Ready<Queued>>): Array<Promise<unknown>> => {
    const out: Array<Promise<unknown>> = [];
    for (const { item, outcome } of ready) {
      if (item.grip.action === 'noop') {
        hooks.onItem?.('noop');
        continue;
      }
      hooks.onItem?.(outcome);
      out.push(deps.publish(inputOf(item.grip)));
    }
    return out;
  };

  const arm = (): void => {
    if (closed || timer !== undefined) return;
    const due = sequencer.nextDue();
    if (due === undefined) return;
    timer = setTimeout(
      () => {
        timer = undefined;
        for (const p of publishReady(sequencer.expire(now()))) {
          p.catch((err: unknown) =>
            failedLog.log({ err: toError(err).message }, 'GRIP publish of a waiting item failed'),
          );
        }
        arm();
      },
      Math.max(0, due - now()),
    );
    timer.unref();
  };

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const config = deps.config();
    const auth = deps.auth();
    const refuse = (
      status: number,
      reason: string,
      text: string,
      headers: Record<string, string | string[]> = {},
    ): void => {
      hooks.onRejected?.(reason);
      reply(res, status, text, headers);
    };
    if (!auth.enabled) {
      refuse(
        404,
        'grip_off',
        'Pushpin-compatible publishing is off: set grip.publish_key (JWT or bearer key) or grip.publish_user and grip.publish_password (Basic)',
      );
      return;
    }
    if (req.method !== 'POST') {
      refuse(405, 'method_not_allowed', `Method not allowed: ${req.method ?? ''}.`.slice(0, 64), {
        allow: 'POST',
      });
      return;
    }
    const problem = await auth.check(req.headers.authorization);
    if (problem !== null) {
      refuse(401, 'grip_unauthorized', `Unauthorized: ${problem}`, {
        'www-authenticate': auth.challenges(),
      });
      return;
    }
    const type = responseType(req.headers.accept);
    if (type === null) {
      refuse(406, 'grip_not_acceptable', NOT_ACCEPTABLE);
      return;
    }
    const max = config.grip.max_publish_size;
    const body = await readBody(req, max);
    if (body === undefined) return; // the client went away mid-body: nobody to answer
    if (body === null) {
      refuse(413, 'grip_too_large', `Request body exceeds ${max} bytes (grip.max_publish_size)`, {
        connection: 'close',
      });
      return;
    }
    const items = parsePublishBody(body, {
      maxItems: config.grip.max_items,
      channel: channelLimitsOf(config.sse),
    });
    if (typeof items === 'string') {
      refuse(400, 'grip_bad_request', items);
      return;
    }
    const sends: Array<Promise<unknown>> = [];
    const ignored = new Set<IgnoredFormat>();
    for (const grip of items) {
      for (const what of grip.ignored) {
        hooks.onIgnored?.(what);
        ignored.add(what);
      }
      const { outcome, ready } = sequencer.add(
        {
          grip,
          channel: grip.channel,
          id: grip.id,
          prevId: grip.prevId,
          noSeq: grip.noSeq,
          bytes: grip.content.length,
        },
        now(),
      );
      if (outcome === 'duplicate' || outcome === 'dropped') hooks.onItem?.(outcome);
      sends.push(...publishReady(ready));
    }
    if (ignored.size > 0) {
      ignoredLog.log(
        { ignored: [...ignored] },
        'GRIP publish: the sidecar carries the http-stream format only; http-response, ws-message and content-filters are ignored',
      );
    }
    arm();
    const failed = (await Promise.allSettled(sends)).find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      const message = toError(failed.reason).message;
      failedLog.log({ err: message }, 'GRIP publish failed');
      reply(res, 500, `Publish failed: ${message}`);
      return;
    }
    if (type === 'json') reply(res, 200, JSON.stringify({ message: 'Published' }), {}, type);
    else reply(res, 200, 'Published');
  };

  return {
    handle: (req, res) => {
      serve(req, res).catch((err: unknown) => {
        logger.error({ err: toError(err) }, 'GRIP publish request failed');
        if (!res.headersSent) reply(res, 500, 'Internal error');
        else res.destroy();
      });
    },
    close(): void {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** The hub publish of an item. Ids are per channel in Pushpin: the publisher id says which. */
function inputOf(item: GripItem): PublishInput {
  if (item.action === 'close') {
    return { channels: [item.channel], data: Buffer.alloc(0), close: true, ingress: 'grip' };
  }
  return {
    channels: [item.channel],
    data: item.content,
    ingress: 'grip',
    // A channel name holds no ':': `grip:<channel>:<id>` names one id of one channel.
    ...(item.id === undefined ? {} : { publisherId: `grip:${item.channel}:${item.id}` }),
  };
}

/**
 * Pushpin's negotiation: the last of text/plain, text/*, * /*, * (text) or application/json,
 * application/* (json) in Accept wins; none of them: null (406). No Accept: text.
 */
export function responseType(accept: string | undefined): 'text' | 'json' | null {
  if (accept === undefined || accept.trim() === '') return 'text';
  let type: 'text' | 'json' | null = null;
  for (const range of accept.split(',')) {
    const media = (range.split(';')[0] ?? '').trim().toLowerCase();
    if (media === 'text/plain' || media === 'text/*' || media === '*/*' || media === '*') {
      type = 'text';
    } else if (media === 'application/json' || media === 'application/*') type = 'json';
  }
  return type;
}

/**
 * The request body; null once it exceeds `max` bytes (the rest is not read); undefined when the
 * client aborted it.
 */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | null | undefined> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) return null;
      chunks.push(chunk);
    }
  } catch (err) {
    if (req.destroyed) return undefined;
    throw err;
  }
  return Buffer.concat(chunks, size);
}

function reply(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string | string[]> = {},
  type: 'text' | 'json' = 'text',
): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    'content-type': type === 'json' ? 'application/json' : 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}
