/**
 * What the Mercure hub's handlers share: their dependencies, the hub URL a request reached (base
 * of relative topics, default audience), CORS, JSON answers, and token checks answered per
 * RFC 6750 (WWW-Authenticate with the error code only; the precise reason goes to the log).
 */
import type { SidecarConfig } from '../config/schema.ts';
import { sendError, type RequestContext } from '../http/request-context.ts';
import type { Hub, PublishFn, SharedHistoryFn } from '../sse/hub.ts';
import { corsHeaders } from '../sse/stream-response.ts';
import type { TopicMatcher } from './matchers.ts';
import type { SubscriptionRegistry } from './subscriptions.ts';
import {
  AuthError,
  bearerChallenge,
  tokenOf,
  type Grants,
  type Role,
  type TokenVerifier,
} from './token.ts';

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

/** The hub's URL as this request reached it: the base of relative topics and the default audience. */
export function hubUrlOf(ctx: RequestContext, path: string): string {
  const host = ctx.req.headers.host ?? 'localhost';
  return `${ctx.https ? 'https' : 'http'}://${host}${path}`;
}

export function metadataUrlOf(hubUrl: string, path: string): string {
  return `${new URL(hubUrl).origin}/.well-known/oauth-protected-resource${path}`;
}

export function mercureCors(ctx: RequestContext, config: SidecarConfig): Record<string, string> {
  const cors = corsHeaders(ctx.req, config.mercure.cors_origins);
  if (Object.keys(cors).length > 0) {
    cors['access-control-expose-headers'] = 'Link, Mercure-Last-Event-ID, Last-Event-ID';
  }
  return cors;
}

export function sendJson(
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
export function sendAuthError(
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
export async function grantsOf(
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
