/**
 * The Mercure hub's HTTP doors at mercure.path: subscribe (GET), publish (POST), the
 * subscriptions API (GET {path}/subscriptions…), CORS preflight, and the protected resource
 * metadata (RFC 9728) at /.well-known/oauth-protected-resource{path}. Streams are the hub's:
 * limits, history, replay and the slow-consumer policy are the askr ones; a Mercure topic and an
 * askr channel are one stream. Authorization failures answer per RFC 6750 (WWW-Authenticate).
 */ import type { SidecarConfig } from '../config/schema.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { ExtraRoute } from '../http/server.ts';
import { answerPreflight } from '../sse/stream-response.ts';
import type { TopicMatcher } from './matchers.ts';
import { hubUrlOf, mercureCors, sendJson, type MercureDeps } from './mercure-http.ts';
import { publish } from './publish.ts';
import { subscribe } from './subscribe.ts';
import { subscriptionsApi } from './subscriptions-api.ts';
import type { TokenSettings } from './token.ts';

export type { MercureDeps } from './mercure-http.ts';

/** Counters of the verifier's caches (see TokenSettings), for metrics. */
export type MercureCacheHooks = Pick<TokenSettings, 'onTokenCache' | 'onPatternCache'>;

/** The token rules of a config's [mercure] section, and the bounds of the verifier's caches. */
export function tokenSettingsOf(
  config: SidecarConfig,
  onPatternAborted?: (matcher: TopicMatcher) => void,
  cacheHooks: MercureCacheHooks = {},
): TokenSettings {
  const m = config.mercure;
  return {
    ...(onPatternAborted === undefined ? {} : { onPatternAborted }),
    ...cacheHooks,
    tokenCacheSize: m.token_cache_size,
    patternCacheSize: m.pattern_cache_size,
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

function preflight(ctx: RequestContext, cors: Record<string, string>): Promise<void> {
  answerPreflight(
    ctx.res,
    cors,
    'GET, POST',
    'Authorization, Last-Event-ID, Content-Type, Cache-Control',
  );
  return Promise.resolve();
}
