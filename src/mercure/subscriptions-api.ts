/**
 * The Mercure subscriptions API: GET {path}/subscriptions[/{match_type}/{match}[/{subscriber}]]
 * (0.x in compatibility mode: /{topic}[/{subscriber}]). The token must grant subscribe on the
 * request path itself, the form subscription events name it by; every answer carries the
 * reconciliation cursor on its Link header.
 */
import { sendError, type RequestContext } from '../http/request-context.ts';
import { grantsOf, hubUrlOf, sendAuthError, sendJson, type MercureDeps } from './mercure-http.ts';
import type { SubscriptionDoc } from './subscriptions.ts';
import { AuthError, canSubscribe, type Grants } from './token.ts';

/** GET {path}/subscriptions[/{match_type}/{match}[/{subscriber}]] (0.x: /{topic}[/{subscriber}]). */
export async function subscriptionsApi(
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
