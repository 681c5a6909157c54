/**
 * The Mercure hub's HTTP doors at mercure.path: subscribe (GET), publish (POST), the
 * subscriptions API (GET {path}/subscriptions…), CORS preflight, and the protected resource
 * metadata (RFC 9728) at /.well-known/oauth-protected-resource{path}. Streams are the hub's:
 * limits, history, replay and the slow-consumer policy are the askr ones; a Mercure topic and an
 * askr channel are one stream. Authorization failures answer per RFC 6750 (WWW-Authenticate).
 */
import { randomUUID } from 'node:crypto';
import type { SidecarConfig } from '../config/schema.ts';
import { isSidecarError } from '../errors.ts';
import { httpStatusOf } from '../http/error-status.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import type { Hub, PublishFn, SharedHistory, SharedHistoryFn } from '../sse/hub.ts';
import { corsHeaders, reserveStream, SSE_HEADERS } from '../sse/stream-response.ts';
import { addressesHubNamespace, textProblem, type TopicMatcher } from './matchers.ts';
import type { SubscriptionDoc, SubscriptionRegistry } from './subscriptions.ts';
import {
  AuthError,
  bearerChallenge,
  canPublish,
  canSubscribe,
  tokenOf,
  type Grants,
  type Role,
  type TokenSettings,
  type TokenVerifier,
} from './token.ts';
import { matchersOf, topicView } from './view.ts';

export interface MercureDeps {
  hub: Hub;
  /** Hub.publish on one node, the cluster bus on several. */
  publish: PublishFn;
  /** Cluster mode: the shared history a resume from before this node joined needs. */
  sharedHistory?: SharedHistoryFn;
  config: () => SidecarConfig;
  /** Keys and rules of the current config (rebuilt on reload). */
  verifier: () => TokenVerifier;
  registry: SubscriptionRegistry;
  onRejected?(reason: string): void;
  /** A subscriber's URL pattern hit its evaluation time limit. */
  onPatternAborted?(matcher: TopicMatcher): void;
}

const FORM_TYPE = 'application/x-www-form-urlencoded';
const RETRY_RE = /^[0-9]+$/;
/** The largest `retry` kept as a number (about 285 years). */
const MAX_RETRY_MS = Number.MAX_SAFE_INTEGER;

/** The token rules of a config's [mercure] section. */
export function tokenSettingsOf(
  config: SidecarConfig,
  onPatternAborted?: (matcher: TopicMatcher) => void,
): TokenSettings {
  const m = config.mercure;
  return {
    ...(onPatternAborted === undefined ? {} : { onPatternAborted }),
    issuers: m.issuers,
    jwtKey: m.jwt_key,
    publisherJwtKey: m.publisher_jwt_key,
    subscriberJwtKey: m.subscriber_jwt_key,
    jwtAlgorithms: m.jwt_algorithms,
    compatibility: m.compatibility,
    maxTokenSize: m.max_token_size,
    maxTopicLength: m.max_topic_length,
  };
}

/** The hub's URL as this request reached it: the base of relative topics and the default audience. */
function hubUrlOf(ctx: RequestContext, path: string): string {
  const host = ctx.req.headers.host ?? 'localhost';
  return `${ctx.https ? 'https' : 'http'}://${host}${path}`;
}

function metadataUrlOf(hubUrl: string, path: string): string {
  return `${new URL(hubUrl).origin}/.well-known/oauth-protected-resource${path}`;
}

/** The routes to register: exact paths, and the prefix of the subscriptions API. */
export function createMercureRoutes(deps: MercureDeps): {
  exact: ReadonlyArray<readonly [string, ExtraRoute]>;
  prefix: readonly [string, ExtraRoute];
} {
  const path = deps.config().mercure.path;
  const hubRoute: ExtraRoute = async (ctx, url) => {
    ctx.kind = 'sse';
    const config = deps.config();
    const cors = mercureCors(ctx, config);
    if (ctx.req.method === 'OPTIONS') return preflight(ctx, cors);
    if (ctx.req.method === 'GET' || ctx.req.method === 'HEAD') {
      return subscribe(ctx, url, cors, deps);
    }
    if (ctx.req.method === 'POST') {
      ctx.kind = 'publish';
      return publish(ctx, url, cors, deps);
    }
    sendError(ctx, 405, 'the Mercure hub accepts GET (subscribe) and POST (publish)', {
      ...cors,
      allow: 'GET, POST, OPTIONS',
    });
  };
  const apiRoute: ExtraRoute = async (ctx, url) => {
    ctx.kind = 'internal';
    const config = deps.config();
    const cors = mercureCors(ctx, config);
    if (ctx.req.method === 'OPTIONS') return preflight(ctx, cors);
    const rawTarget = ctx.req.url ?? '/';
    const q = rawTarget.indexOf('?');
    const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q);
    if (!config.mercure.subscriptions || !rawPath.startsWith(`${path}/subscriptions`)) {
      sendError(ctx, 404, 'no such Mercure resource', cors);
      return;
    }
    if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') {
      sendError(ctx, 405, 'the subscriptions API accepts GET', { ...cors, allow: 'GET, OPTIONS' });
      return;
    }
    await subscriptionsApi(ctx, url, rawPath, cors, deps);
  };
  const metadataRoute: ExtraRoute = async (ctx) => {
    ctx.kind = 'internal';
    const config = deps.config();
    const hubUrl = hubUrlOf(ctx, path);
    const doc: Record<string, unknown> = {
      resource: config.mercure.audience === '' ? hubUrl : config.mercure.audience,
      bearer_methods_supported: ['header'],
      authorization_details_types_supported: ['https://mercure.rocks/authorization-detail'],
      mercure_cookie: config.mercure.cookie_name,
      mercure_matcher_types_supported: ['exact', 'urlpattern'],
      ...(config.mercure.subscriptions ? { mercure_subscriptions: true } : {}),
    };
    sendJson(ctx, 200, doc, { ...mercureCors(ctx, config), 'cache-control': 'max-age=60' });
    return Promise.resolve();
  };
  return {
    exact: [
      [path, hubRoute],
      [`/.well-known/oauth-protected-resource${path}`, metadataRoute],
    ],
    prefix: [`${path}/`, apiRoute],
  };
}

function mercureCors(ctx: RequestContext, config: SidecarConfig): Record<string, string> {
  const cors = corsHeaders(ctx.req, config.mercure.cors_origins);
  if (Object.keys(cors).length > 0) {
    cors['access-control-expose-headers'] = 'Link, Mercure-Last-Event-ID, Last-Event-ID';
  }
  return cors;
}

function preflight(ctx: RequestContext, cors: Record<string, string>): Promise<void> {
  ctx.res.writeHead(204, {
    ...cors,
    'access-control-allow-methods': 'GET, POST',
    'access-control-allow-headers': 'Authorization, Last-Event-ID, Content-Type, Cache-Control',
    'access-control-max-age': '600',
  });
  ctx.res.end();
  return Promise.resolve();
}

function sendJson(
  ctx: RequestContext,
  status: number,
  doc: unknown,
  headers: Record<string, string>,
): void {
  const body = Buffer.from(JSON.stringify(doc));
  ctx.res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': body.length,
    'x-request-id': ctx.requestId,
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

/** Answers an AuthError per RFC 6750 (the client gets no reason beyond the error code). */
function sendAuthError(
  ctx: RequestContext,
  err: AuthError,
  hubUrl: string,
  path: string,
  cors: Record<string, string>,
  deps: MercureDeps,
): void {
  deps.onRejected?.(err.error === null ? 'mercure_no_token' : `mercure_${err.error}`);
  ctx.log.info(
    { requestId: ctx.requestId, status: err.status, reason: err.message },
    'mercure: refused',
  );
  const challenge = bearerChallenge({
    error: err.error,
    resourceMetadata: metadataUrlOf(hubUrl, path),
  });
  const messages: Record<number, string> = {
    400: 'malformed access token presentation',
    401: err.error === null ? 'an access token is required' : 'invalid access token',
    403: 'the access token does not grant this',
  };
  sendError(ctx, err.status, messages[err.status] ?? 'refused', {
    ...cors,
    'www-authenticate': challenge,
  });
}

/** The request's verified grants; null when no token was presented. @throws AuthError */
async function grantsOf(
  ctx: RequestContext,
  url: URL,
  role: Role,
  hubUrl: string,
  deps: MercureDeps,
): Promise<{ grants: Grants; via: 'header' | 'cookie' | 'query' } | null> {
  const m = deps.config().mercure;
  const presented = tokenOf(ctx.req, url, {
    cookieName: m.cookie_name,
    compatibility: m.compatibility,
    maxTokenSize: m.max_token_size,
  });
  if (presented === null) return null;
  const audience = m.audience === '' ? hubUrl : m.audience;
  const grants = await deps.verifier().verify(presented.token, role, audience, hubUrl);
  return { grants, via: presented.via };
}

async function subscribe(
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
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 60_000);
    deps.hub.subscribe({
      sink: res,
      channels: view.exact,
      view,
      clientIp: ctx.clientAddress,
      kind: 'mercure',
      ...(initial === undefined ? {} : { initial }),
      ...(grants?.expiresAt === undefined ? {} : { expiresAt: grants.expiresAt }),
    });
    if (m.subscriptions && !res.destroyed) {
      const end = deps.registry.open(`urn:uuid:${randomUUID()}`, matchers, grants);
      res.once('close', end);
    }
  } finally {
    slot.release(); // a no-op once the stream took the place
  }
}

/**
 * Cluster mode: what a resume from one of our ids older than this node needs from the shared
 * history (exact topics only: a pattern's topics are not known in advance).
 */
async function sharedFor(
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
function resumeIdOf(
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

async function readForm(
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

/** Why a publish's fields are refused: [status, message], or null. */
function updateProblem(
  form: URLSearchParams,
  hubUrl: string,
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
    if (addressesHubNamespace(topic, hubUrl)) {
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
function originAllowed(ctx: RequestContext, hubUrl: string, config: SidecarConfig): boolean {
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

async function publish(
  ctx: RequestContext,
  url: URL,
  cors: Record<string, string>,
  deps: MercureDeps,
): Promise<void> {
  const config = deps.config();
  const m = config.mercure;
  const hubUrl = hubUrlOf(ctx, m.path);
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
  const problem = updateProblem(form, hubUrl, config);
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

/** GET {path}/subscriptions[/{match_type}/{match}[/{subscriber}]] (0.x: /{topic}[/{subscriber}]). */
async function subscriptionsApi(
  ctx: RequestContext,
  url: URL,
  rawPath: string,
  cors: Record<string, string>,
  deps: MercureDeps,
): Promise<void> {
  const config = deps.config();
  const m = config.mercure;
  const hubUrl = hubUrlOf(ctx, m.path);
  let grants: Grants;
  try {
    const verified = await grantsOf(ctx, url, 'subscribe', hubUrl, deps);
    if (verified === null)
      throw new AuthError(401, null, 'the subscriptions API needs an access token');
    grants = verified.grants;
    // The topic to authorize is the request path itself, as subscription events name it.
    if (!canSubscribe(grants, [rawPath])) {
      throw new AuthError(403, 'insufficient_scope', `no subscribe grant on ${rawPath}`);
    }
  } catch (err) {
    if (err instanceof AuthError) return sendAuthError(ctx, err, hubUrl, m.path, cors, deps);
    throw err;
  }
  const rest = rawPath.slice(`${m.path}/subscriptions`.length);
  if (rest !== '' && !rest.startsWith('/')) {
    sendError(ctx, 404, 'no such Mercure resource', cors);
    return;
  }
  let parts: string[];
  try {
    parts = rest === '' ? [] : rest.slice(1).split('/').map(decodeURIComponent);
  } catch {
    sendError(ctx, 400, 'malformed percent-encoding in the path', cors);
    return;
  }
  const hub = deps.hub;
  const cursor = hub.lastMercureId;
  const headers = {
    ...cors,
    link: `<${hubUrl}>; rel="mercure"; last-event-id="${cursor.replace(/["\\]/g, '\\$&')}"; type="mercure"; content-type="application/json"`,
    'cache-control': 'must-revalidate',
  };
  const collection = (docs: SubscriptionDoc[]): void =>
    sendJson(ctx, 200, { id: rawPath, type: 'subscriptions', subscriptions: docs }, headers);
  const legacy =
    m.compatibility && parts.length > 0 && parts[0] !== 'exact' && parts[0] !== 'urlpattern';
  if (parts.length === 0) return collection(deps.registry.list());
  if (legacy) {
    const [topic, subscriber] = parts as [string, string | undefined];
    if (parts.length > 2) return sendError(ctx, 404, 'no such Mercure resource', cors);
    if (subscriber === undefined) {
      return sendJson(
        ctx,
        200,
        {
          '@context': 'https://mercure.rocks/',
          id: rawPath,
          type: 'Subscriptions',
          subscriptions: deps.registry.listLegacy({ topic }),
        },
        headers,
      );
    }
    const [doc] = deps.registry.listLegacy({ topic, subscriber });
    if (doc === undefined) return sendError(ctx, 404, 'no such subscription', cors);
    return sendJson(ctx, 200, doc, headers);
  }
  const [matchType, match, subscriber] = parts;
  if (parts.length > 3 || matchType === undefined || match === undefined) {
    sendError(
      ctx,
      404,
      'no such Mercure resource: use subscriptions/{match_type}/{match}[/{subscriber}]',
      cors,
    );
    return;
  }
  if (subscriber === undefined) return collection(deps.registry.list({ matchType, match }));
  const [doc] = deps.registry.list({ matchType, match, subscriber });
  if (doc === undefined) return sendError(ctx, 404, 'no such subscription', cors);
  sendJson(ctx, 200, doc, headers);
}
