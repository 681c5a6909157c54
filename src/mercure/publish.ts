/**
 * Mercure publish (POST {path}, form-encoded): the token must grant publish on every topic; the
 * fields are checked as the spec asks (reserved namespace, `*`, reserved id and type, retry
 * digits, sizes) before the update enters the hub, where askr streams of the same names get it too.
 */
import type { SidecarConfig } from '../config/schema.ts';
import { isSidecarError } from '../errors.ts';
import { httpStatusOf } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import { hubNamespace, textProblem } from './matchers.ts';
import { grantsOf, hubUrlOf, sendAuthError, type MercureDeps } from './mercure-http.ts';
import { AuthError, canPublish, type Grants } from './token.ts';

const FORM_TYPE = 'application/x-www-form-urlencoded';
const RETRY_RE = /^[0-9]+$/;
/** The largest `retry` kept as a number (about 285 years). */
const MAX_RETRY_MS = Number.MAX_SAFE_INTEGER;

export async function readForm(
  ctx: RequestContext,
  max: number,
): Promise<URLSearchParams | { status: number; message: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      return { status: 413, message: `update body over ${max} bytes (mercure.max_update_size)` };
    }
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks, size);
  const text = body.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(body)) {
    return { status: 400, message: 'the update body is not valid UTF-8' };
  }
  return new URLSearchParams(text);
}

/**
 * Why a publish's fields are refused: [status, message], or null. `inHubNamespace` is
 * hubNamespace() of the request's hub URL.
 */
export function updateProblem(
  form: URLSearchParams,
  inHubNamespace: (topic: string) => boolean,
  config: SidecarConfig,
): [number, string] | null {
  const m = config.mercure;
  const topics = form.getAll('topic');
  if (topics.length === 0) return [400, 'missing "topic" field'];
  if (topics.length > m.max_topics) {
    return [413, `${topics.length} topics; the limit is ${m.max_topics} (mercure.max_topics)`];
  }
  for (const topic of topics) {
    if (Buffer.byteLength(topic) > m.max_topic_length) {
      return [413, `a topic is over ${m.max_topic_length} bytes (mercure.max_topic_length)`];
    }
    const problem = textProblem(topic, 'topic');
    if (problem !== null) return [400, problem];
    if (topic === '') return [400, 'a topic is empty'];
    if (topic === '*') return [400, 'the topic "*" is reserved (the wildcard matcher)'];
    if (inHubNamespace(topic)) {
      return [
        400,
        `topic ${JSON.stringify(topic.slice(0, 128))} is in the hub's reserved namespace`,
      ];
    }
  }
  const id = form.get('id');
  if (id !== null) {
    const problem = textProblem(id, 'id');
    if (problem !== null) return [400, problem];
    if (id.startsWith('#')) return [400, 'the id must not start with "#" (hub-generated ids do)'];
    if (id === 'earliest') return [400, 'the id "earliest" is reserved'];
    if (Buffer.byteLength(id) > m.max_topic_length) {
      return [413, `the id is over ${m.max_topic_length} bytes (mercure.max_topic_length)`];
    }
  }
  const type = form.get('type');
  if (type !== null) {
    const problem = textProblem(type, 'type');
    if (problem !== null) return [400, problem];
    if (type === 'mercure') return [400, 'the type "mercure" is reserved for hub events'];
  }
  const retry = form.get('retry');
  if (retry !== null && !RETRY_RE.test(retry)) return [400, 'retry must be ASCII digits only'];
  return null;
}

/** A cookie-authorized publish must come from an allowed origin (CSRF). */
export function originAllowed(ctx: RequestContext, hubUrl: string, config: SidecarConfig): boolean {
  const { origin, referer } = ctx.req.headers;
  let source: string | null = null;
  if (typeof origin === 'string' && origin !== 'null') source = origin;
  else if (typeof referer === 'string') {
    try {
      source = new URL(referer).origin;
    } catch {
      source = null;
    }
  }
  if (source === null) return false;
  const allowed = config.mercure.publish_origins;
  return source === new URL(hubUrl).origin || allowed.includes(source) || allowed.includes('*');
}

export async function publish(
  ctx: RequestContext,
  url: URL,
  cors: Record<string, string>,
  deps: MercureDeps,
): Promise<void> {
  const config = deps.config();
  const m = config.mercure;
  const hubUrl = hubUrlOf(ctx, m.path);
  // Parsed once per request, not once per topic (issue 13).
  const inHubNamespace = hubNamespace(hubUrl);
  if (inHubNamespace === null) {
    // No topic could be resolved against it: the reserved namespace could not be enforced.
    deps.onRejected?.('bad_host');
    sendError(ctx, 400, 'the Host header does not make a valid hub URL', cors);
    return;
  }
  const type = (ctx.req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== FORM_TYPE) {
    deps.onRejected?.('publish_bad_request');
    sendError(ctx, 415, `publish with Content-Type: ${FORM_TYPE}`, cors);
    return;
  }
  let grants: Grants;
  try {
    const verified = await grantsOf(ctx, url, 'publish', hubUrl, deps);
    if (verified === null) throw new AuthError(401, null, 'publishing needs an access token');
    if (verified.via === 'cookie' && !originAllowed(ctx, hubUrl, config)) {
      throw new AuthError(
        403,
        'insufficient_scope',
        'cookie-authorized publish from an origin not in mercure.publish_origins',
      );
    }
    grants = verified.grants;
  } catch (err) {
    if (err instanceof AuthError) return sendAuthError(ctx, err, hubUrl, m.path, cors, deps);
    throw err;
  }
  const form = await readForm(ctx, m.max_update_size);
  if (!(form instanceof URLSearchParams)) {
    deps.onRejected?.(form.status === 413 ? 'publish_too_large' : 'publish_bad_request');
    sendError(ctx, form.status, form.message, {
      ...cors,
      ...(form.status === 413 ? { connection: 'close' } : {}),
    });
    return;
  }
  const problem = updateProblem(form, inHubNamespace, config);
  if (problem !== null) {
    deps.onRejected?.(problem[0] === 413 ? 'publish_too_large' : 'publish_bad_request');
    sendError(ctx, problem[0], problem[1], cors);
    return;
  }
  const topics = [...new Set(form.getAll('topic'))];
  if (!canPublish(grants, topics)) {
    return sendAuthError(
      ctx,
      new AuthError(403, 'insufficient_scope', 'the token does not grant publish on every topic'),
      hubUrl,
      m.path,
      cors,
      deps,
    );
  }
  const id = form.get('id') ?? undefined;
  const type_ = form.get('type') ?? undefined;
  const retry = form.get('retry');
  try {
    const result = await deps.publish({
      channels: topics,
      data: Buffer.from(form.get('data') ?? '', 'utf8'),
      ...(type_ === undefined || type_ === '' ? {} : { event: type_ }),
      topicMeta: {
        private: form.has('private'),
        id,
        retryMs: retry === null ? undefined : Math.min(Number(retry), MAX_RETRY_MS),
      },
      ingress: 'mercure',
    });
    const eventId = id ?? (result.id === null ? '' : `urn:askr:${result.id}`);
    const body = Buffer.from(eventId);
    ctx.res.writeHead(200, {
      ...cors,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': body.length,
      'x-request-id': ctx.requestId,
    });
    ctx.res.end(body);
  } catch (err) {
    if (isSidecarError(err) && httpStatusOf(err) === 400) {
      deps.onRejected?.('publish_bad_request');
      sendError(ctx, 400, err.message, cors);
      return;
    }
    throw err;
  }
}
