// What an access token grants: Mercure authorization details (spec "Authorization Details",
// "Topic Matcher List"), the 0.x `mercure` claim in compatibility mode, and the checks of grants
// against topics and payloads (spec "Payloads"). Tokens are real JWS signed with jose and verified
// by TokenVerifier. A regression here looks like a malformed grant partially honoured, a grant
// wider or narrower than written, or the wrong payload given to a subscriber.
import { beforeAll, describe, expect, it } from 'vitest';
import type { JWTPayload } from 'jose';
import {
  b64url,
  claims,
  detail,
  expectInvalidToken,
  HUB,
  now,
  secretKey,
  settings,
  sign,
} from '../../test/helpers/token-fixtures.ts';
import {
  canPublish,
  canSubscribe,
  MERCURE_DETAIL_TYPE,
  payloadFor,
  type Grants,
} from './grants.ts';
import { TokenVerifier } from './token.ts';

let hs: TokenVerifier;

beforeAll(async () => {
  hs = await TokenVerifier.create(settings());
});

describe('authorization_details', () => {
  it('a token without a Mercure detail grants nothing but is valid', async () => {
    const noClaim = await sign(claims({ authorization_details: undefined }));
    const foreign = await sign(
      claims({
        authorization_details: [{ type: 'payment_initiation', topics: 'not ours', actions: 7 }],
      }),
    );
    for (const token of [noClaim, foreign]) {
      const grants = await hs.verify(token, 'publish', HUB, HUB);
      expect(grants.publish).toEqual([]);
      expect(grants.subscribe).toEqual([]);
      expect(canPublish(grants, ['https://example.com/a'])).toBe(false);
    }
  });

  it('ignores unknown actions without invalidating the token', async () => {
    const token = await sign(
      claims({
        authorization_details: [
          detail(['publish', 'delete'], [{ match: 'https://example.com/a' }]),
          detail(['admin'], [{ match: '*' }]),
        ],
      }),
    );
    const grants = await hs.verify(token, 'publish', HUB, HUB);
    expect(grants.publish.map((m) => m.pattern)).toEqual(['https://example.com/a']);
    expect(grants.subscribe).toEqual([]);
  });

  it('resolves relative URL patterns against the hub URL', async () => {
    const token = await sign(
      claims({
        authorization_details: [
          detail(
            ['subscribe'],
            [{ match: '/.well-known/mercure/subscriptions{/*}?', match_type: 'urlpattern' }],
          ),
        ],
      }),
    );
    const grants = await hs.verify(token, 'subscribe', HUB, HUB);
    expect(canSubscribe(grants, [`${HUB}/subscriptions/exact/a/b`])).toBe(true);
    expect(
      canSubscribe(grants, ['https://elsewhere.example/.well-known/mercure/subscriptions']),
    ).toBe(false);
  });

  const longPattern = `https://example.com/${'a'.repeat(2048)}`;
  it.each<[string, unknown, RegExp]>([
    ['authorization_details not an array', { type: MERCURE_DETAIL_TYPE }, /not an array/],
    ['an entry that is not an object', ['mercure'], /\[0\] is not an object/],
    ['actions missing', [{ type: MERCURE_DETAIL_TYPE, topics: [{ match: '*' }] }], /actions/],
    ['actions empty', [detail([], [{ match: '*' }])], /actions is not a non-empty array/],
    [
      'actions not an array',
      [detail('publish' as unknown as unknown[], [{ match: '*' }])],
      /actions/,
    ],
    ['a non-string action', [detail(['publish', 1], [{ match: '*' }])], /non-string/],
    ['topics missing', [{ type: MERCURE_DETAIL_TYPE, actions: ['publish'] }], /topics/],
    ['topics empty', [detail(['publish'], [])], /topics is not a non-empty array/],
    [
      'a bare-string topic',
      [detail(['publish'], ['https://example.com/a'])],
      /topics\[0\] is not an object/,
    ],
    ['a null topic', [detail(['publish'], [null])], /not an object/],
    [
      'a topic without match',
      [detail(['publish'], [{ match_type: 'exact' }])],
      /match is not a string/,
    ],
    ['a non-string match', [detail(['publish'], [{ match: 42 }])], /match is not a string/],
    ['an empty match', [detail(['publish'], [{ match: '' }])], /empty matcher/],
    [
      'an unknown match_type',
      [detail(['publish'], [{ match: 'x', match_type: 'regex' }])],
      /match_type "regex"/,
    ],
    [
      'match_type in another case',
      [detail(['publish'], [{ match: 'x', match_type: 'Exact' }])],
      /match_type "Exact"/,
    ],
    [
      'the 0.x uritemplate type',
      [detail(['publish'], [{ match: 'x', match_type: 'uritemplate' }])],
      /match_type/,
    ],
    [
      'an invalid URL pattern',
      [detail(['publish'], [{ match: 'https://example.com/(', match_type: 'urlpattern' }])],
      /topics\[0\]/,
    ],
    [
      'a pattern over max_topic_length',
      [detail(['publish'], [{ match: longPattern }])],
      /topics\[0\]/,
    ],
    [
      'one bad detail among good ones (no partial acceptance)',
      [
        detail(['publish'], [{ match: '*' }]),
        detail(['subscribe'], [{ match: 'x', match_type: 'nope' }]),
      ],
      /authorization_details\[1\]/,
    ],
    [
      'more than 64 Mercure details',
      Array.from({ length: 65 }, (_, i) =>
        detail(['subscribe'], [{ match: `https://example.com/${i}` }]),
      ),
      /more than 64/,
    ],
    [
      'more than 256 topics in a detail',
      [
        detail(
          ['subscribe'],
          Array.from({ length: 257 }, (_, i) => ({ match: `https://example.com/${i}` })),
        ),
      ],
      /more than 256/,
    ],
  ])('authorization_details: %s', async (_name, details, reason) => {
    const token = await sign(claims({ authorization_details: details }));
    await expectInvalidToken(hs.verify(token, 'publish', HUB, HUB), reason);
  });

  it('64 details and 256 topics are within the limits; foreign details do not count', async () => {
    const details = [
      ...Array.from({ length: 10 }, () => ({ type: 'other' })),
      ...Array.from({ length: 63 }, (_, i) =>
        detail(['subscribe'], [{ match: `https://e.example/${i}` }]),
      ),
      detail(
        ['subscribe'],
        Array.from({ length: 256 }, (_, i) => ({ match: `https://f.example/${i}` })),
      ),
    ];
    const grants = await hs.verify(
      await sign(claims({ authorization_details: details })),
      'subscribe',
      HUB,
      HUB,
    );
    expect(grants.subscribe).toHaveLength(63 + 256);
  });
});

describe('compatibility mode (0.x mercure claim)', () => {
  let compat: TokenVerifier;
  beforeAll(async () => {
    compat = await TokenVerifier.create(settings({ compatibility: true }));
  });

  const legacyClaims = (extra: Record<string, unknown> = {}): JWTPayload => ({
    mercure: {
      publish: ['https://example.com/books/{id}'],
      subscribe: ['https://example.com/users/42', '*'],
      payload: { user: 42 },
    },
    ...extra,
  });

  it('accepts a 0.x token without typ, aud, exp or iss', async () => {
    const token = await sign(legacyClaims(), { header: { typ: 'JWT' } });
    const grants = await compat.verify(token, 'publish', HUB, HUB);
    expect(grants).toMatchObject({ legacy: true, expiresAt: undefined, issuer: undefined });
    expect(grants.publish.map((m) => m.type)).toEqual(['uritemplate']);
    expect(canPublish(grants, ['https://example.com/books/1'])).toBe(true);
    expect(canPublish(grants, ['https://example.com/users/1'])).toBe(false);
    expect(grants.subscribe.map((g) => g.payload)).toEqual([{ user: 42 }, { user: 42 }]);
    expect(grants.subscribe[1]?.matcher.any).toBe(true);
    expect(payloadFor(grants, 'https://anything.example/')).toEqual({ user: 42 });
  });

  it('reads the namespaced https://mercure.rocks/ claim', async () => {
    const token = await sign(
      { 'https://mercure.rocks/': { subscribe: ['https://example.com/a'] } },
      { header: { typ: undefined } },
    );
    const grants = await compat.verify(token, 'subscribe', HUB, HUB);
    expect(grants.legacy).toBe(true);
    expect(canSubscribe(grants, ['https://example.com/a'])).toBe(true);
    expect(grants.publish).toEqual([]);
  });

  it('still checks the signature, the algorithm, exp and nbf when present', async () => {
    await expectInvalidToken(
      compat.verify(
        await sign(legacyClaims(), { key: secretKey('wrong secret') }),
        'publish',
        HUB,
        HUB,
      ),
      /SIGNATURE/,
    );
    await expectInvalidToken(
      compat.verify(`${b64url({ alg: 'none' })}.${b64url(legacyClaims())}.`, 'publish', HUB, HUB),
      /ALG_NOT_ALLOWED/,
    );
    await expectInvalidToken(
      compat.verify(await sign(legacyClaims({ exp: now() - 5 })), 'publish', HUB, HUB),
      /EXPIRED/,
    );
    await expectInvalidToken(
      compat.verify(await sign(legacyClaims({ nbf: now() + 600 })), 'publish', HUB, HUB),
      /nbf/,
    );
  });

  it.each<[string, unknown, RegExp]>([
    ['a claim that is not an object', ['*'], /claim mercure is not an object/],
    ['publish not an array', { publish: '*' }, /mercure.publish is not an array/],
    [
      'a non-string selector',
      { subscribe: [{ match: '*' }] },
      /mercure.subscribe\[0\] is not a string/,
    ],
    [
      'too many selectors',
      { subscribe: Array.from({ length: 257 }, (_, i) => `https://e.example/${i}`) },
      /more than 256/,
    ],
  ])('rejects %s', async (_name, mercure, reason) => {
    await expectInvalidToken(compat.verify(await sign({ mercure }), 'publish', HUB, HUB), reason);
  });

  it('refuses 0.x tokens when compatibility is off', async () => {
    const token = await sign(legacyClaims(), { header: { typ: 'JWT' } });
    await expectInvalidToken(hs.verify(token, 'publish', HUB, HUB), /typ "JWT"/);
    await expectInvalidToken(
      hs.verify(await sign(legacyClaims()), 'publish', HUB, HUB),
      /exp is missing/,
    );
  });

  it('still accepts 1.0 tokens, fully validated', async () => {
    await expect(compat.verify(await sign(claims()), 'publish', HUB, HUB)).resolves.toMatchObject({
      legacy: false,
    });
    await expectInvalidToken(
      compat.verify(await sign(claims(), { header: { typ: 'JWT' } }), 'publish', HUB, HUB),
      /typ/,
    );
    // A token carrying both claims is a 1.0 token: its legacy claim cannot relax the checks.
    const both = await sign(
      { ...legacyClaims(), authorization_details: [] },
      { header: { typ: 'JWT' } },
    );
    await expectInvalidToken(compat.verify(both, 'publish', HUB, HUB), /typ/);
  });
});

describe('canPublish, canSubscribe, payloadFor', () => {
  async function grantsOf(details: unknown[]): Promise<Grants> {
    return hs.verify(await sign(claims({ authorization_details: details })), 'subscribe', HUB, HUB);
  }

  it('publish needs a grant on every topic, alternates included', async () => {
    const grants = await grantsOf([
      detail(
        ['publish'],
        [
          { match: 'https://example.com/books/:id', match_type: 'urlpattern' },
          { match: 'https://example.com/announcements' },
        ],
      ),
    ]);
    expect(canPublish(grants, ['https://example.com/books/1'])).toBe(true);
    expect(
      canPublish(grants, ['https://example.com/books/1', 'https://example.com/announcements']),
    ).toBe(true);
    expect(
      canPublish(grants, ['https://example.com/books/1', 'https://example.com/users/42/books/1']),
    ).toBe(false);
    expect(canPublish(grants, ['https://example.com/announcements/2'])).toBe(false);
    expect(canPublish(grants, [])).toBe(false);
    // A publish grant is not a subscribe grant.
    expect(canSubscribe(grants, ['https://example.com/books/1'])).toBe(false);
  });

  it('subscribe needs a grant on any one topic (canonical or alternate)', async () => {
    const grants = await grantsOf([
      detail(
        ['subscribe'],
        [{ match: 'https://example.com/users/42/*', match_type: 'urlpattern' }],
      ),
    ]);
    expect(canSubscribe(grants, ['https://example.com/books/1'])).toBe(false);
    expect(
      canSubscribe(grants, ['https://example.com/books/1', 'https://example.com/users/42/books/1']),
    ).toBe(true);
    expect(canSubscribe(grants, ['https://example.com/users/99/books/1'])).toBe(false);
    expect(canSubscribe(null, ['https://example.com/users/42/books/1'])).toBe(false);
    expect(canPublish(grants, ['https://example.com/users/42/books/1'])).toBe(false);
  });

  it('exact matching is byte for byte', async () => {
    const grants = await grantsOf([
      detail(['subscribe'], [{ match: 'https://example.com/books/1' }]),
    ]);
    expect(canSubscribe(grants, ['https://example.com/books/1'])).toBe(true);
    expect(canSubscribe(grants, ['https://example.com/books/1/'])).toBe(false);
    expect(canSubscribe(grants, ['https://EXAMPLE.com/books/1'])).toBe(false);
  });

  it('selects the payload of the first subscribe detail matching the subscription’s matcher', async () => {
    // The spec "Payloads" example.
    const grants = await grantsOf([
      detail(['subscribe'], [{ match: 'https://example.com/foo' }], { custom1: 'foo' }),
      detail(['publish'], [{ match: '*' }], { ignored: true }),
      detail(['subscribe'], [{ match: 'https://example.com/bar/:id', match_type: 'urlpattern' }], {
        custom2: 'bar',
      }),
      detail(['subscribe'], [{ match: '*' }], { custom3: 'default' }),
    ]);
    expect(payloadFor(grants, 'https://example.com/foo')).toEqual({ custom1: 'foo' });
    expect(payloadFor(grants, 'https://example.com/bar/:id')).toEqual({ custom2: 'bar' });
    expect(payloadFor(grants, 'https://example.com/bar/7')).toEqual({ custom2: 'bar' });
    expect(payloadFor(grants, 'https://example.com/other')).toEqual({ custom3: 'default' });
    expect(payloadFor(null, 'https://example.com/foo')).toBeUndefined();
  });

  it('a broad detail first masks the payloads of later specific ones', async () => {
    const grants = await grantsOf([
      detail(['subscribe'], [{ match: '*' }], { broad: true }),
      detail(['subscribe'], [{ match: 'https://example.com/foo' }], { specific: true }),
    ]);
    expect(payloadFor(grants, 'https://example.com/foo')).toEqual({ broad: true });
  });

  it('no matching detail, or a detail without payload: undefined', async () => {
    const grants = await grantsOf([
      detail(['subscribe'], [{ match: 'https://example.com/a' }]),
      detail(['subscribe'], [{ match: 'https://example.com/b' }], { b: 1 }),
    ]);
    expect(payloadFor(grants, 'https://example.com/a')).toBeUndefined();
    expect(payloadFor(grants, 'https://example.com/c')).toBeUndefined();
    expect(payloadFor(grants, 'https://example.com/b')).toEqual({ b: 1 });
  });
});
