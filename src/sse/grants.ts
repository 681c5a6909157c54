/**
 * Subscription grants (issue 12): a short-lived token the sidecar mints after the app's auth route
 * allowed channels (POST /askr/auth), so a stream reconnecting within its life needs no PHP.
 * Format: `<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, payload part))>`; only
 * node:crypto's createHmac and timingSafeEqual do crypto. A token verifies only with the secret
 * that signed it: a new sse.grant_secret (or a restart with a random one) voids every grant.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { PresenceMember } from './presence.ts';
import { isSocketId } from './channel-rules.ts';

/** What a grant says. Field names are short: the token travels in a header, a URL or a cookie. */
export interface GrantPayload {
  v: 1;
  /** The private-/presence- channels the app allowed. */
  c: string[];
  /** Presence channels' members, as the app's auth route named them. */
  m: Record<string, PresenceMember>;
  /** The socket id the grant was minted for (the stream's and whisper's sender id). */
  s: string | null;
  /** Expiry, ms since the epoch. */
  exp: number;
}

export type GrantCheck =
  { ok: true; grant: GrantPayload } | { ok: false; reason: 'malformed' | 'signature' | 'expired' };

/** Pusher's socket id shape (`1234.5678`); the length bound keeps it out of abuse. */
/** Longer tokens are refused before any HMAC is computed. */
export const MAX_GRANT_CHARS = 16 * 1024;
/** HMAC-SHA256 output, bytes. */
const MAC_BYTES = 32;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;

/** A new socket id (`<uint32>.<uint32>`, Pusher's shape). */
export function newSocketId(): string {
  const b = randomBytes(8);
  return `${b.readUInt32BE(0)}.${b.readUInt32BE(4)}`;
}

/** The process's fallback secret: grants signed with it die with the process. */
export function randomGrantSecret(): Buffer {
  return randomBytes(32);
}

function mac(secret: Buffer | string, payloadPart: string): Buffer {
  return createHmac('sha256', secret).update(payloadPart).digest();
}

/** Signs a grant. `secret`: sse.grant_secret's bytes (or the random fallback). */
export function signGrant(payload: GrantPayload, secret: Buffer | string): string {
  const part = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${part}.${mac(secret, part).toString('base64url')}`;
}

/**
 * Verifies a token's signature, then its shape and expiry. Never throws: any defect is a
 * reason, and the caller answers 401 whatever it is (the reason goes to logs and metrics only).
 */
export function verifyGrant(token: string, secret: Buffer | string, nowMs: number): GrantCheck {
  if (token.length > MAX_GRANT_CHARS) return { ok: false, reason: 'malformed' };
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return { ok: false, reason: 'malformed' };
  const part = token.slice(0, dot);
  const sigPart = token.slice(dot + 1);
  if (!B64URL_RE.test(part) || !B64URL_RE.test(sigPart)) return { ok: false, reason: 'malformed' };
  const sig = Buffer.from(sigPart, 'base64url');
  // timingSafeEqual needs equal lengths; a wrong length is no secret (every valid MAC is 32 bytes).
  if (sig.length !== MAC_BYTES || !timingSafeEqual(sig, mac(secret, part))) {
    return { ok: false, reason: 'signature' };
  }
  // Signed by us: the JSON is ours, but its shape is still checked (a former format, a bug).
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const grant = grantOf(doc);
  if (grant === null) return { ok: false, reason: 'malformed' };
  if (grant.exp <= nowMs) return { ok: false, reason: 'expired' };
  return { ok: true, grant };
}

function grantOf(doc: unknown): GrantPayload | null {
  if (typeof doc !== 'object' || doc === null) return null;
  const o = doc as Record<string, unknown>;
  const { c, m, s, exp } = o;
  if (o['v'] !== 1 || !Array.isArray(c) || !c.every((x) => typeof x === 'string')) return null;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return null;
  if (s !== null && (typeof s !== 'string' || !isSocketId(s))) return null;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return null;
  const members: Record<string, PresenceMember> = {};
  for (const [channel, member] of Object.entries(m as Record<string, unknown>)) {
    const id = (member as { user_id?: unknown } | null)?.user_id;
    if (typeof id !== 'string' && typeof id !== 'number') return null;
    members[channel] = member as PresenceMember;
  }
  return { v: 1, c, m: members, s, exp };
}

/** Whether the grant allows `channel` (a presence channel also needs its member). */
export function grantCovers(grant: GrantPayload, channel: string): boolean {
  if (!grant.c.includes(channel)) return false;
  return !channel.startsWith('presence-') || grant.m[channel] !== undefined;
}

/** Name of the httpOnly cookie that carries the grant when the URL does not. */
export const GRANT_COOKIE = 'askr_grant';

/** The `askr_grant` cookie's value in a Cookie header, or null. */
export function grantCookieOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === GRANT_COOKIE) {
      const value = pair.slice(eq + 1).trim();
      return value === '' ? null : value;
    }
  }
  return null;
}

/**
 * The Set-Cookie of a grant: httpOnly (page scripts never read it), SameSite=Lax, Secure on
 * https, scoped to `path` and living as long as the grant.
 */
export function grantSetCookie(
  token: string,
  path: string,
  maxAgeMs: number,
  https: boolean,
): string {
  const maxAge = Math.max(0, Math.floor(maxAgeMs / 1000));
  return (
    `${GRANT_COOKIE}=${token}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax` +
    (https ? '; Secure' : '')
  );
}

/** The directory both paths live under (`/askr/` for /askr/events and /askr/whisper). */
export function commonCookiePath(paths: readonly string[]): string {
  const dirs = paths.map((p) => p.slice(0, p.lastIndexOf('/') + 1));
  let prefix = dirs[0] ?? '/';
  for (const dir of dirs) {
    while (prefix.length > 1 && !dir.startsWith(prefix)) {
      prefix = prefix.slice(0, prefix.lastIndexOf('/', prefix.length - 2) + 1);
    }
  }
  return prefix.startsWith('/') ? prefix : '/';
}

/** The header a fetch() client sends its grant in (events endpoint, whisper): never logged. */
export const GRANT_HEADER = 'x-askr-grant';

/** The X-Askr-Grant header's value, or null when absent or empty. A repeated header arrives
 * joined with ", " (Node), which never verifies: a 401, as any defect. */
export function grantHeaderOf(headers: IncomingHttpHeaders): string | null {
  const value = headers[GRANT_HEADER];
  return typeof value === 'string' && value !== '' ? value : null;
}

/** Where a request's grant came from: the events URL, X-Askr-Grant, or the cookie. */
export type GrantSource = 'param' | 'header' | 'cookie';

/**
 * The grant a request carries, verified: the explicit one (URL parameter or header) wins over the
 * cookie; null when there is none.
 */
export function requestGrant(
  explicit: string | null | undefined,
  cookieHeader: string | undefined,
  explicitSource: 'param' | 'header',
  secret: Buffer | string,
  nowMs: number,
): { source: GrantSource; check: GrantCheck } | null {
  if (explicit !== null && explicit !== undefined && explicit !== '') {
    return { source: explicitSource, check: verifyGrant(explicit, secret, nowMs) };
  }
  const cookie = grantCookieOf(cookieHeader);
  if (cookie === null) return null;
  return { source: 'cookie', check: verifyGrant(cookie, secret, nowMs) };
}

/** What a client is told for any grant defect (it fetches a new grant, whatever the cause). */
export function grantInvalidMessage(authBatchPath: string): string {
  return `grant expired or invalid: fetch a new one from ${authBatchPath}`;
}
