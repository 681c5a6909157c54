/**
 * Subscription grants: signing and verification (table-driven, with the security regressions:
 * a forged, tampered, truncated or expired token never verifies; another secret voids it), the
 * cookie helpers and the whisper rate limiter.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  commonCookiePath,
  grantCookieOf,
  grantCovers,
  grantSetCookie,
  MAX_GRANT_CHARS,
  newSocketId,
  requestGrant,
  signGrant,
  verifyGrant,
  type GrantPayload,
} from './grants.ts';
import { WhisperRateLimiter } from './whisper.ts';
import { isSocketId } from './channel-rules.ts';

const SECRET = 'k'.repeat(32);
const NOW = 1_700_000_000_000;
const grant: GrantPayload = {
  v: 1,
  c: ['private-orders.1', 'presence-room.1'],
  m: { 'presence-room.1': { user_id: 7, user_info: { name: 'a' } } },
  s: '12.34',
  exp: NOW + 60_000,
};

/** A token whose signature is valid for `payload` (what only the secret's holder can make). */
function signedRaw(payload: unknown, secret = SECRET): string {
  const part = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${part}.${createHmac('sha256', secret).update(part).digest('base64url')}`;
}

describe('signGrant / verifyGrant', () => {
  it('round-trips a grant', () => {
    const token = signGrant(grant, SECRET);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(verifyGrant(token, SECRET, NOW)).toEqual({ ok: true, grant });
    expect(verifyGrant(token, Buffer.from(SECRET), NOW).ok).toBe(true);
  });

  const token = signGrant(grant, SECRET);
  const [part = '', sig = ''] = token.split('.');
  const forgedPart = Buffer.from(JSON.stringify({ ...grant, c: ['private-admin'] })).toString(
    'base64url',
  );
  it.each([
    ['another secret', token, 'other-secret'.repeat(3), 'signature'],
    ['a payload swapped under the signature', `${forgedPart}.${sig}`, SECRET, 'signature'],
    [
      'a flipped signature byte',
      `${part}.${sig.slice(0, -2)}A${sig.slice(-1)}`,
      SECRET,
      'signature',
    ],
    ['a truncated signature', `${part}.${sig.slice(0, 20)}`, SECRET, 'signature'],
    ['no signature', `${part}.`, SECRET, 'malformed'],
    ['no dot', part, SECRET, 'malformed'],
    ['three parts', `${part}.${sig}.x`, SECRET, 'malformed'],
    ['non-base64url characters', `${part}.${sig.slice(0, -1)}=`, SECRET, 'malformed'],
    ['an empty token', '', SECRET, 'malformed'],
    ['an oversized token', `${'a'.repeat(MAX_GRANT_CHARS)}.${sig}`, SECRET, 'malformed'],
  ])('refuses %s', (_name, bad, secret, reason) => {
    expect(verifyGrant(bad, secret, NOW)).toEqual({ ok: false, reason });
  });

  it('refuses an expired grant, and one expiring now', () => {
    expect(verifyGrant(token, SECRET, grant.exp)).toEqual({ ok: false, reason: 'expired' });
    expect(verifyGrant(token, SECRET, grant.exp + 1)).toEqual({ ok: false, reason: 'expired' });
    expect(verifyGrant(token, SECRET, grant.exp - 1).ok).toBe(true);
  });

  it.each([
    ['a string', 'x'],
    ['version 2', { ...grant, v: 2 }],
    ['channels not strings', { ...grant, c: [1] }],
    ['no exp', { ...grant, exp: undefined }],
    ['a bad socket id', { ...grant, s: '1.2\r\n' }],
    ['a member without user_id', { ...grant, m: { 'presence-room.1': { name: 'x' } } }],
    ['members as an array', { ...grant, m: [] }],
  ])('refuses a signed payload with %s', (_name, payload) => {
    expect(verifyGrant(signedRaw(payload), SECRET, NOW)).toEqual({
      ok: false,
      reason: 'malformed',
    });
  });

  it('grantCovers needs the channel, and a member for a presence channel', () => {
    expect(grantCovers(grant, 'private-orders.1')).toBe(true);
    expect(grantCovers(grant, 'presence-room.1')).toBe(true);
    expect(grantCovers(grant, 'private-orders.2')).toBe(false);
    expect(grantCovers({ ...grant, c: ['presence-room.2'] }, 'presence-room.2')).toBe(false);
  });
});

describe('socket ids and cookies', () => {
  it('newSocketId has Pusher shape', () => {
    for (let i = 0; i < 20; i++) expect(newSocketId()).toSatisfy(isSocketId);
    expect(isSocketId('1.2')).toBe(true);
    expect(isSocketId('1.2.3')).toBe(false);
    expect(isSocketId('a.b')).toBe(false);
  });

  it.each([
    [undefined, null],
    ['a=1', null],
    ['askr_grant=', null],
    ['a=1; askr_grant=tok.en; b=2', 'tok.en'],
    ['askr_grant_x=no; askr_grant=yes', 'yes'],
  ])('grantCookieOf(%j) = %j', (header, value) => {
    expect(grantCookieOf(header)).toBe(value);
  });

  it('grantSetCookie is httpOnly, SameSite=Lax, Secure on https only', () => {
    expect(grantSetCookie('t.s', '/askr/', 300_000, false)).toBe(
      'askr_grant=t.s; Path=/askr/; Max-Age=300; HttpOnly; SameSite=Lax',
    );
    expect(grantSetCookie('t.s', '/askr/', 300_000, true)).toMatch(/; Secure$/);
  });

  it.each([
    [['/askr/events', '/askr/whisper'], '/askr/'],
    [['/a/b/events', '/a/c/whisper'], '/a/'],
    [['/events', '/x/whisper'], '/'],
    [['/sse/events', '/sse/whisper'], '/sse/'],
  ])('commonCookiePath(%j) = %s', (paths, path) => {
    expect(commonCookiePath(paths)).toBe(path);
  });

  it('requestGrant: the explicit token wins over the cookie', () => {
    const good = signGrant(grant, SECRET);
    const cookie = `askr_grant=${good}`;
    expect(requestGrant(null, undefined, 'param', SECRET, NOW)).toBeNull();
    expect(requestGrant(null, cookie, 'param', SECRET, NOW)?.source).toBe('cookie');
    const explicit = requestGrant('bad.token', cookie, 'header', SECRET, NOW);
    expect(explicit).toEqual({ source: 'header', check: { ok: false, reason: 'signature' } });
  });
});

describe('WhisperRateLimiter', () => {
  it('allows the rate per second, then asks to wait, then refills', () => {
    const limiter = new WhisperRateLimiter();
    for (let i = 0; i < 10; i++) expect(limiter.take('1.1', 10, NOW)).toBe(0);
    expect(limiter.take('1.1', 10, NOW)).toBe(1);
    expect(limiter.take('2.2', 10, NOW)).toBe(0); // another socket has its own bucket
    expect(limiter.take('1.1', 10, NOW + 100)).toBe(0); // 100 ms refill one token
    expect(limiter.take('1.1', 10, NOW + 100)).toBe(1);
  });

  it('forgets full buckets, so memory follows recent senders', () => {
    const limiter = new WhisperRateLimiter();
    for (let i = 0; i < 5000; i++) limiter.take(`${i}.0`, 10, NOW);
    expect(limiter.size).toBeGreaterThan(1000);
    limiter.take('late.0', 10, NOW + 10_000);
    for (let i = 0; i < 5000; i++) limiter.take(`x${i}.0`, 10, NOW + 10_000);
    expect(limiter.size).toBeLessThanOrEqual(5001); // the first 5000 were full again: dropped
  });
});
