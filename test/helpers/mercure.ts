/**
 * Mercure test clients: access tokens minted with jose (1.0 `authorization_details` or the 0.x
 * `mercure` claim, every claim overridable so a test can break exactly one), form-encoded publishes
 * and subscriptions read with the raw SSE client of sse-client.ts. A subscription is returned once
 * its first frame (`retry:`, written when the hub holds the stream) arrived and the hub counts Mercure
 * streams (askr_sse_connections{kind="mercure"}), so a publish that follows reaches it.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, type KeyInput } from 'jose';
import { request } from 'undici';
import { openStream, type Frame, type SseStream } from './sse-client.ts';
import { startTestSidecar, type TestSidecar } from './sidecar.ts';
import type { Cleanups } from './wait.ts';

/** HMAC secret most tests configure as mercure.jwt_key. */
export const SECRET = 'askr-mercure-test-secret-0123456789abcdef';
/** The `iss` tokens carry and mercure.issuers lists. */
export const ISSUER = 'https://issuer.test';
/** The Mercure authorization detail type (spec: Authorization Details). */
export const DETAIL_TYPE = 'https://mercure.rocks/authorization-detail';
export const HUB_PATH = '/.well-known/mercure';

/** Overrides enabling the hub with SECRET and ISSUER; anonymous subscribers allowed. */
export const MERCURE_BASE: Readonly<Record<string, unknown>> = {
  'mercure.enabled': true,
  'mercure.jwt_key': SECRET,
  'mercure.issuers': [ISSUER],
  'mercure.anonymous': true,
};

/** The hub URL as the sidecar sees it from a test client (also the default token audience). */
export function hubUrl(s: { url: string }, path = HUB_PATH): string {
  return `${s.url}${path}`;
}

/**
 * One authorization detail. String topics become `{match}` (exact, or the `*` wildcard); objects
 * are kept as given, so a test can pass a malformed one.
 */
export function detail(
  actions: readonly unknown[],
  topics: readonly unknown[],
  payload?: unknown,
): Record<string, unknown> {
  return {
    type: DETAIL_TYPE,
    actions: [...actions],
    topics: topics.map((t) => (typeof t === 'string' ? { match: t } : t)),
    ...(payload === undefined ? {} : { payload }),
  };
}

/** A URL Pattern topic matcher for detail(). */
export function urlpattern(match: string): { match: string; match_type: 'urlpattern' } {
  return { match, match_type: 'urlpattern' };
}

export interface MintOptions {
  /** HMAC secret (string or bytes) or a private key. */
  key: string | KeyInput;
  /** Default HS256. */
  alg?: string;
  /** null leaves the claim (or the header `typ`) out. */
  iss?: string | null;
  aud?: string | string[] | null;
  /** Seconds since the epoch; default an hour from now; null: no `exp`. */
  exp?: number | null;
  nbf?: number;
  /** Default "at+jwt". */
  typ?: string | null;
  sub?: string;
  /** The `authorization_details` claim, as is (may be malformed on purpose). */
  details?: unknown;
  /** The 0.x `mercure` claim. */
  mercureClaim?: unknown;
  /** Any other claims (e.g. the 0.x "https://mercure.rocks/" claim). */
  claims?: Record<string, unknown>;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Signs a JWT access token (RFC 9068 claims filled in unless overridden). */
export async function mintToken(o: MintOptions): Promise<string> {
  const now = nowSeconds();
  const payload: Record<string, unknown> = {
    sub: o.sub ?? `urn:uuid:${randomUUID()}`,
    client_id: 'askr-tests',
    iat: now,
    jti: `urn:uuid:${randomUUID()}`,
    ...(o.iss === null || o.iss === undefined ? {} : { iss: o.iss }),
    ...(o.aud === null || o.aud === undefined ? {} : { aud: o.aud }),
    ...(o.exp === null ? {} : { exp: o.exp ?? now + 3600 }),
    ...(o.nbf === undefined ? {} : { nbf: o.nbf }),
    ...(o.details === undefined ? {} : { authorization_details: o.details }),
    ...(o.mercureClaim === undefined ? {} : { mercure: o.mercureClaim }),
    ...o.claims,
  };
  const typ = o.typ === undefined ? 'at+jwt' : o.typ;
  const key = typeof o.key === 'string' ? new TextEncoder().encode(o.key) : o.key;
  return new SignJWT(payload)
    .setProtectedHeader({ alg: o.alg ?? 'HS256', ...(typ === null ? {} : { typ }) })
    .sign(key);
}

/** A valid HS256 token for this sidecar (SECRET, ISSUER, its hub URL as audience). */
export function hubToken(
  s: { url: string },
  details: readonly unknown[],
  overrides: Partial<MintOptions> = {},
): Promise<string> {
  return mintToken({ key: SECRET, iss: ISSUER, aud: hubUrl(s), details, ...overrides });
}

/** A token granting publish on every topic. */
export function publisherToken(s: { url: string }): Promise<string> {
  return hubToken(s, [detail(['publish'], ['*'])]);
}

/** An `alg: none` token (never to be accepted). */
export function unsignedToken(claims: Record<string, unknown>): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'none', typ: 'at+jwt' })}.${part(claims)}.`;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Form fields; repeat a name by giving an array. */
export type Fields = Record<string, string | readonly string[]> | ReadonlyArray<[string, string]>;

function form(fields: Fields): string {
  const params = new URLSearchParams();
  const entries = Array.isArray(fields)
    ? (fields as ReadonlyArray<[string, string]>)
    : Object.entries(fields as Record<string, string | readonly string[]>).flatMap(([k, v]) =>
        typeof v === 'string'
          ? [[k, v] as [string, string]]
          : v.map((x) => [k, x] as [string, string]),
      );
  for (const [k, v] of entries) params.append(k, v);
  return params.toString();
}

export interface PublishOptions {
  /** Sent as `Authorization: Bearer`; omitted when undefined. */
  token?: string;
  headers?: Record<string, string>;
  /** Default application/x-www-form-urlencoded. */
  contentType?: string;
  /** A raw body instead of the encoded fields. */
  body?: string;
  path?: string;
}

/** POST {hub path} with form fields. */
export async function publish(
  s: { url: string },
  fields: Fields,
  o: PublishOptions = {},
): Promise<HttpAnswer> {
  const res = await request(hubUrl(s, o.path), {
    method: 'POST',
    headers: {
      'content-type': o.contentType ?? 'application/x-www-form-urlencoded',
      ...(o.token === undefined ? {} : { authorization: `Bearer ${o.token}` }),
      ...o.headers,
    },
    body: o.body ?? form(fields),
  });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** Publishes with a publish-everything token and expects 200; returns the update's id. */
export async function publishOk(s: { url: string }, fields: Fields): Promise<string> {
  const res = await publish(s, fields, { token: await publisherToken(s) });
  if (res.status !== 200) throw new Error(`publish answered ${res.status}: ${res.body}`);
  return res.body;
}

/** A GET on any path of the sidecar, body read whole. */
export async function get(
  s: { url: string },
  path: string,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  const res = await request(`${s.url}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** Streams the hub holds now (the askr_sse_connections{kind="mercure"} gauge). */
export async function mercureConnections(s: TestSidecar): Promise<number> {
  const metric = s.registry.getSingleMetric('askr_sse_connections');
  if (metric === undefined) throw new Error('askr_sse_connections is not registered');
  const { values } = await metric.get();
  return values.find((v) => v.labels['kind'] === 'mercure')?.value ?? 0;
}

/** Polls an async condition every 10 ms; rejects after timeoutMs naming `what`. */
export async function eventually(
  check: () => Promise<boolean>,
  timeoutMs = 5000,
  what = 'the condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface MercureStream extends SseStream {
  /** The frames carrying an update (data or event), in arrival order. */
  updates(): Frame[];
  /** Resolves with the first update whose data is `data`. */
  update(data: string, timeoutMs?: number): Promise<Frame>;
}

export interface SubscribeOptions {
  token?: string;
  cookie?: string;
  headers?: Record<string, string>;
  path?: string;
}

/**
 * GET {hub path}?query. A 200 resolves once its first frame arrived and the hub counts a Mercure
 * stream; any other status resolves with the whole body read. Close it (or register stream.close
 * as a cleanup). The count is not compared with the one before the request: on a sidecar shared
 * between tests, streams of an earlier test may still be closing meanwhile.
 */
export async function subscribe(
  s: TestSidecar,
  query: Fields,
  o: SubscribeOptions = {},
): Promise<MercureStream> {
  const qs = form(query);
  const st = await openStream(`${hubUrl(s, o.path)}${qs === '' ? '' : `?${qs}`}`, {
    ...(o.token === undefined ? {} : { authorization: `Bearer ${o.token}` }),
    ...(o.cookie === undefined ? {} : { cookie: o.cookie }),
    ...o.headers,
  });
  const updates = (): Frame[] =>
    st.frames.filter((f) => f.data !== undefined || f.event !== undefined);
  const stream = Object.assign(st, {
    updates,
    update: (data: string, timeoutMs?: number) => st.waitFor((f) => f.data === data, timeoutMs),
  });
  if (st.status === 200) {
    await st.frame(0);
    await eventually(
      async () => (await mercureConnections(s)) > 0,
      5000,
      'the hub to count the Mercure stream',
    );
  } else {
    await st.ended;
  }
  return stream;
}

/** The data of every update received so far. */
export function datas(st: MercureStream): Array<string | undefined> {
  return st.updates().map((f) => f.data);
}

/** Resolves when the stream ends; rejects after timeoutMs (so a test never hangs on it). */
export async function endsWithin(st: SseStream, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      st.ended,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`the stream was still open after ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The auth-params of a `WWW-Authenticate: Bearer …` challenge, or null when there is none. */
export function bearerChallenge(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> | null {
  const raw = headers['www-authenticate'];
  const value = Array.isArray(raw) ? raw.find((v) => /^bearer\b/i.test(v)) : raw;
  if (value === undefined || !/^bearer\b/i.test(value)) return null;
  const params: Record<string, string> = {};
  for (const m of value
    .slice(6)
    .matchAll(/([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[(m[1] ?? '').toLowerCase()] = m[2] ?? m[3] ?? '';
  }
  return params;
}

/** The protected resource metadata URL of this sidecar's hub (RFC 9728). */
export function resourceMetadataUrl(s: { url: string }, path = HUB_PATH): string {
  return `${s.url}/.well-known/oauth-protected-resource${path}`;
}

/**
 * The two starters a Mercure test file uses, registering their cleanup in `cleanups`: `hub()`
 * starts a sidecar with `base` (and per-test overrides), `sub()` a subscription on one.
 */
export function mercureHarness(
  cleanups: Cleanups,
  base: Readonly<Record<string, unknown>> = MERCURE_BASE,
): {
  hub: (overrides?: Record<string, unknown>) => Promise<TestSidecar>;
  sub: (s: TestSidecar, query: Fields, o?: SubscribeOptions) => Promise<MercureStream>;
} {
  return {
    hub: async (overrides = {}) => {
      const s = await startTestSidecar({ ...base, ...overrides });
      cleanups.push(() => s.close());
      return s;
    },
    sub: async (s, query, o = {}) => {
      const st = await subscribe(s, query, o);
      cleanups.push(() => st.close());
      return st;
    },
  };
}
