// The cache of verified tokens (issue 13) through TokenVerifier, with real JWS signed by jose. A
// regression here looks like a token accepted from the cache that a fresh verification refuses:
// expired (or not yet valid) by now, verified under a key or rules a reload replaced, tampered, a
// look-alike of a cached token, or refused once and then accepted; or a cache past its bound.
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  b64url,
  claims,
  detail,
  expectInvalidToken,
  HUB,
  now,
  rejection,
  secretKey,
  settings,
  sign,
} from '../../test/helpers/token-fixtures.ts';
import type { TopicMatcher } from './matchers.ts';
import { TokenVerifier, type TokenCacheOutcome, type TokenSettings } from './token.ts';

const BOOKS = { match: '/books/:id', match_type: 'urlpattern' };

/** A verifier caching `size` tokens, and the outcomes of its cache lookups, in order. */
async function cachingVerifier(
  size = 100,
  overrides: Partial<TokenSettings> = {},
): Promise<{ verifier: TokenVerifier; outcomes: TokenCacheOutcome[] }> {
  const outcomes: TokenCacheOutcome[] = [];
  const verifier = await TokenVerifier.create(
    settings({ tokenCacheSize: size, onTokenCache: (o) => outcomes.push(o), ...overrides }),
  );
  return { verifier, outcomes };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('a verified token is served from the cache', () => {
  it('the second use of a token is a hit with the same grants', async () => {
    const { verifier, outcomes } = await cachingVerifier();
    const token = await sign(claims({ authorization_details: [detail(['publish'], [BOOKS])] }));
    const first = await verifier.verify(token, 'publish', HUB, HUB);
    const second = await verifier.verify(token, 'publish', HUB, HUB);
    expect(outcomes).toEqual(['miss', 'hit']);
    const shape = (g: typeof first): unknown => ({
      ...g,
      publish: g.publish.map((m) => [m.type, m.pattern]),
    });
    expect(shape(second)).toEqual(shape(first));
    expect(second.publish.map((m) => m.matches('/books/1'))).toEqual([true]);
  });

  it('each request gets matchers of its own: a grant aborted once is not off for the next', async () => {
    const aborted: TopicMatcher[] = [];
    const { verifier, outcomes } = await cachingVerifier(100, {
      patternCacheSize: 100,
      onPatternAborted: (m) => aborted.push(m),
    });
    const hostile = { match: '/:x((?:a+)+b)', match_type: 'urlpattern' };
    const token = await sign(claims({ authorization_details: [detail(['publish'], [hostile])] }));
    const first = await verifier.verify(token, 'publish', HUB, HUB);
    expect(first.publish[0]?.matches(`/${'a'.repeat(40)}!`)).toBe(false); // time limit
    expect(aborted).toEqual([first.publish[0]]);
    expect(first.publish[0]?.matches('/aab')).toBe(false); // off for that request
    const second = await verifier.verify(token, 'publish', HUB, HUB);
    expect(outcomes).toEqual(['miss', 'hit']);
    expect(second.publish[0]).not.toBe(first.publish[0]);
    expect(second.publish[0]?.matches('/aab')).toBe(true);
    // The hostile topic is evaluated again, under the time limit, and counted again.
    expect(second.publish[0]?.matches(`/${'a'.repeat(40)}!`)).toBe(false);
    expect(aborted).toHaveLength(2);
  });

  it('the role, the audience and the hub URL are part of the key', async () => {
    const { verifier, outcomes } = await cachingVerifier();
    const other = 'https://other.example.com/.well-known/mercure';
    const token = await sign(claims({ aud: [HUB, other] }));
    await verifier.verify(token, 'publish', HUB, HUB);
    await verifier.verify(token, 'subscribe', HUB, HUB);
    await verifier.verify(token, 'publish', other, HUB);
    await verifier.verify(token, 'publish', HUB, other);
    expect(outcomes).toEqual(['miss', 'miss', 'miss', 'miss']);
    // Cached for one audience, the token is still checked against another it does not carry.
    const narrow = await sign(claims());
    await verifier.verify(narrow, 'publish', HUB, HUB);
    await expectInvalidToken(verifier.verify(narrow, 'publish', other, HUB), /audience/);
  });

  it('token_cache_size 0 (and the default) cache nothing', async () => {
    const { verifier, outcomes } = await cachingVerifier(0);
    const token = await sign(claims());
    await verifier.verify(token, 'publish', HUB, HUB);
    await verifier.verify(token, 'publish', HUB, HUB);
    expect(outcomes).toEqual(['miss', 'miss']);
    const counted: TokenCacheOutcome[] = [];
    const plain = await TokenVerifier.create(settings({ onTokenCache: (o) => counted.push(o) }));
    await plain.verify(token, 'publish', HUB, HUB);
    await plain.verify(token, 'publish', HUB, HUB);
    expect(counted).toEqual(['miss', 'miss']);
  });
});

describe('the cache refuses what a fresh verification refuses', () => {
  it('a cached token is refused once expired, with jose’s reason, and dropped', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const exp = now() + 60;
    const token = await sign(claims({ exp }));
    const { verifier, outcomes } = await cachingVerifier();
    const uncached = await TokenVerifier.create(settings());
    await verifier.verify(token, 'publish', HUB, HUB);
    vi.setSystemTime(exp * 1000 - 1); // the last millisecond before exp: still valid
    await verifier.verify(token, 'publish', HUB, HUB);
    vi.setSystemTime(exp * 1000); // exp itself: expired (jose: exp <= now)
    const fresh = await rejection(uncached.verify(token, 'publish', HUB, HUB));
    const cached = await rejection(verifier.verify(token, 'publish', HUB, HUB));
    expect(cached).toMatchObject({ status: 401, error: 'invalid_token' });
    expect((cached as Error).message).toBe((fresh as Error).message);
    expect((cached as Error).message).toMatch(/ERR_JWT_EXPIRED/);
    expect(outcomes).toEqual(['miss', 'hit', 'hit']);
    // Dropped: the next use verifies again (and is refused again).
    await expectInvalidToken(verifier.verify(token, 'publish', HUB, HUB), /ERR_JWT_EXPIRED/);
    expect(outcomes.at(-1)).toBe('miss');
  });

  it('a cached token whose nbf is ahead of the clock (set back) is refused as jose does', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const nbf = now() - 10;
    const token = await sign(claims({ nbf }));
    const { verifier } = await cachingVerifier();
    const uncached = await TokenVerifier.create(settings());
    await verifier.verify(token, 'publish', HUB, HUB);
    vi.setSystemTime((nbf - 1) * 1000);
    const fresh = await rejection(uncached.verify(token, 'publish', HUB, HUB));
    const cached = await rejection(verifier.verify(token, 'publish', HUB, HUB));
    expect((cached as Error).message).toBe((fresh as Error).message);
    expect((cached as Error).message).toMatch(/"nbf" claim timestamp check failed/);
  });

  it('a reload with another key refuses a token the old verifier cached', async () => {
    const token = await sign(claims());
    const { verifier } = await cachingVerifier();
    await verifier.verify(token, 'publish', HUB, HUB);
    await verifier.verify(token, 'publish', HUB, HUB);
    const rotated = await TokenVerifier.create(
      settings({ tokenCacheSize: 100, jwtKey: 'another-secret-after-rotation-0123456789' }),
    );
    await expectInvalidToken(rotated.verify(token, 'publish', HUB, HUB), /signature/);
    // And a reload changing the rules (issuers) refuses it too.
    const reissued = await TokenVerifier.create(
      settings({ tokenCacheSize: 100, issuers: ['https://someone-else.example'] }),
    );
    await expectInvalidToken(reissued.verify(token, 'publish', HUB, HUB), /issuer/);
  });

  it('a token with the same claims is verified on its own: another signature, another key', async () => {
    const { verifier, outcomes } = await cachingVerifier();
    const payload = claims();
    await verifier.verify(await sign(payload), 'publish', HUB, HUB);
    // Same claims under another header: a valid token, but another string, so verified.
    await verifier.verify(await sign(payload, { header: { kid: 'k2' } }), 'publish', HUB, HUB);
    expect(outcomes).toEqual(['miss', 'miss']);
    // Same claims signed with a key the hub does not have: refused despite the cached twin.
    const foreign = await sign(payload, { key: secretKey('not-the-hub-secret-0123456789abcdef') });
    await expectInvalidToken(verifier.verify(foreign, 'publish', HUB, HUB), /signature/);
  });

  it('a tampered token is never served from the cache', async () => {
    const { verifier, outcomes } = await cachingVerifier();
    const token = await sign(claims({ authorization_details: [detail(['subscribe'], [])] }));
    // A malformed grant: refused, and not cached as anything.
    await expectInvalidToken(verifier.verify(token, 'publish', HUB, HUB), /topics/);
    const good = await sign(claims({ authorization_details: [] }));
    await verifier.verify(good, 'publish', HUB, HUB);
    const [h, , s] = good.split('.');
    const escalated = `${h}.${b64url(claims())}.${s}`; // a payload granting everything
    await expectInvalidToken(verifier.verify(escalated, 'publish', HUB, HUB), /signature/);
    const sig = s ?? '';
    const flipped = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
    await expectInvalidToken(
      verifier.verify(`${h}.${good.split('.')[1]}.${flipped}`, 'publish', HUB, HUB),
      /signature/,
    );
    expect(outcomes).toEqual(['miss', 'miss', 'miss', 'miss']);
  });

  it('a refused token stays refused: failures are not cached', async () => {
    const { verifier, outcomes } = await cachingVerifier();
    const untyped = await sign(claims(), { header: { typ: 'JWT' } });
    await expectInvalidToken(verifier.verify(untyped, 'publish', HUB, HUB), /typ/);
    await expectInvalidToken(verifier.verify(untyped, 'publish', HUB, HUB), /typ/);
    expect(outcomes).toEqual(['miss', 'miss']);
  });
});

describe('the bound', () => {
  it('keeps at most token_cache_size tokens, the least recently used out first', async () => {
    const { verifier, outcomes } = await cachingVerifier(3);
    const tokens = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => sign(claims({ jti: `token-${i}` }))),
    );
    for (const t of tokens) await verifier.verify(t, 'publish', HUB, HUB);
    expect(outcomes.filter((o) => o === 'evict')).toHaveLength(2);
    outcomes.length = 0;
    // 2, 3 and 4 are kept; 0 and 1 were pushed out.
    for (const t of tokens.slice(2)) await verifier.verify(t, 'publish', HUB, HUB);
    expect(outcomes).toEqual(['hit', 'hit', 'hit']);
    outcomes.length = 0;
    await verifier.verify(tokens[0] ?? '', 'publish', HUB, HUB);
    expect(outcomes).toEqual(['miss', 'evict']);
  });
});
