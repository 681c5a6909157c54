/**
 * Mercure subscribe (GET {path}?match=…): the matchers and the token make a TopicView; the
 * stream takes its place in the hub (the askr limits), replays from Last-Event-ID /
 * last_event_id / earliest with Mercure-Last-Event-ID, and is ended at the token's exp. With
 * active subscriptions on, its subscriptions are registered and announced.
 */
import { randomUUID } from 'node:crypto';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { SharedHistory } from '../sse/hub.ts';
import { reserveStream, SSE_HEADERS, startStream } from '../sse/stream-response.ts';
import type { TopicMatcher } from './matchers.ts';
import { grantsOf, hubUrlOf, sendAuthError, type MercureDeps } from './mercure-http.ts';
import { AuthError, type Grants } from './token.ts';
import { matchersOf, topicView } from './view.ts';

export async function subscribe(
  ctx: RequestContext,
  url: URL,
  cors: Record<string, string>,
  deps: MercureDeps,
): Promise<void> {
  const { req, res } = ctx;
  const config = deps.config();
  const m = config.mercure;
  const hubUrl = hubUrlOf(ctx, m.path);
  const matchers = matchersOf(url.searchParams, hubUrl, {
    maxMatchers: m.max_matchers,
    maxLength: m.max_topic_length,
    compatibility: m.compatibility,
    patterns: deps.verifier().patterns, // N subscribers of one pattern compile it once
    ...(deps.onPatternAborted === undefined
      ? {}
      : { onAborted: (matcher: TopicMatcher) => deps.onPatternAborted?.(matcher) }),
  });
  if (typeof matchers === 'string') {
    deps.onRejected?.('bad_channel');
    sendError(ctx, 400, matchers, cors);
    return;
  }
  let grants: Grants | null = null;
  try {
    const verified = await grantsOf(ctx, url, 'subscribe', hubUrl, deps);
    if (verified === null && !m.anonymous) {
      throw new AuthError(401, null, 'no access token and mercure.anonymous is off');
    }
    grants = verified?.grants ?? null;
  } catch (err) {
    if (err instanceof AuthError) return sendAuthError(ctx, err, hubUrl, m.path, cors, deps);
    throw err;
  }
  if (grants?.expiresAt !== undefined && grants.expiresAt <= Date.now()) {
    return sendAuthError(
      ctx,
      new AuthError(401, 'invalid_token', 'token expired'),
      hubUrl,
      m.path,
      cors,
      deps,
    );
  }
  const slot = reserveStream(ctx, deps, cors);
  if (slot === null) return;
  try {
    const view = topicView(matchers, grants);
    const resume = resumeIdOf(req.headers['last-event-id'], url, m.compatibility);
    const shared =
      resume === null ? undefined : await sharedFor(view.exact, view.patterns, resume, deps);
    if (res.destroyed) return;
    const headers: Record<string, string> = {
      ...SSE_HEADERS,
      ...cors,
      'x-request-id': ctx.requestId,
    };
    let initial: Buffer | undefined;
    if (resume !== null) {
      const plan = deps.hub.planTopicReplay(view, resume, shared);
      headers['mercure-last-event-id'] = plan.anchor;
      // 0.x clients read the anchor from Last-Event-ID.
      headers['last-event-id'] = plan.anchor;
      if (plan.frames.length > 0) initial = Buffer.concat(plan.frames);
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, headers);
      res.end();
      return;
    }
    const sink = startStream(ctx, 200, headers, deps.hub, {
      channels: view.exact,
      view,
      clientIp: ctx.clientAddress,
      kind: 'mercure',
      ...(initial === undefined ? {} : { initial }),
      ...(grants?.expiresAt === undefined ? {} : { expiresAt: grants.expiresAt }),
    });
    if (m.subscriptions && !sink.destroyed) {
      const end = deps.registry.open(`urn:uuid:${randomUUID()}`, matchers, grants);
      sink.once('close', end);
    }
  } finally {
    slot.release(); // a no-op once the stream took the place
  }
}

/**
 * Cluster mode: what a resume from one of our ids older than this node needs from the shared
 * history (exact topics only: a pattern's topics are not known in advance).
 */
export async function sharedFor(
  exact: readonly string[],
  patterns: boolean,
  resume: string,
  deps: MercureDeps,
): Promise<SharedHistory | undefined> {
  if (deps.sharedHistory === undefined || patterns || exact.length === 0) return undefined;
  const seq = deps.hub.ownSeqOf(resume);
  if (seq === null) return undefined;
  return deps.sharedHistory(exact, `${deps.hub.epoch}-${seq}`);
}

/** Last-Event-ID header, else `last_event_id` (and 0.x `lastEventID`) in the query. */
export function resumeIdOf(
  value: string | string[] | undefined,
  url: URL,
  compatibility: boolean,
): string | null {
  const header = Array.isArray(value) ? value[0] : value;
  if (header !== undefined && header !== '') return header;
  const query = url.searchParams.get('last_event_id');
  if (query !== null && query !== '') return query;
  if (compatibility) {
    const legacy = url.searchParams.get('lastEventID') ?? url.searchParams.get('Last-Event-ID');
    if (legacy !== null && legacy !== '') return legacy;
  }
  return null;
}
