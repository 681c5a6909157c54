// Mercure access tokens: verification (RFC 9068 profile of the Mercure spec), authorization
// details, 0.x compatibility claims, presentation and the Bearer challenge. Tokens are real JWS
// signed with jose. A regression here looks like a forged, expired, mistyped or mis-addressed
// token being accepted, a malformed grant partially honoured, or a token read from the wrong place.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CompactSign,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  SignJWT,
  type CryptoKey,
  type JWTPayload,
} from 'jose';
import { ConfigError } from '../errors.ts';
import {
  AuthError,
  bearerChallenge,
  canPublish,
  canSubscribe,
  MERCURE_DETAIL_TYPE,
  payloadFor,
  tokenOf,
  TokenVerifier,
  type Grants,
  type TokenSettings,
} from './token.ts';

const HUB = 'https://hub.example.com/.well-known/mercure';
const ISS = 'https://app.example.com';
const SECRET = 'a-test-secret-that-is-long-enough-for-hs512!';
const now = (): number => Math.floor(Date.now() / 1000);

function settings(overrides: Partial<TokenSettings> = {}): TokenSettings {
  return {
    issuers: [ISS],
    jwtKey: SECRET,
    publisherJwtKey: '',
    subscriberJwtKey: '',
    jwtAlgorithms: [],
    compatibility: false,
    maxTokenSize: 16 * 1024,
    maxTopicLength: 2048,
    ...overrides,
  };
}

/** A Mercure detail; actions and topics unchecked, so malformed ones can be built too. */
function detail(actions: unknown[], topics: unknown[], payload?: unknown): Record<string, unknown> {
  return {
    type: MERCURE_DETAIL_TYPE,
    actions,
    topics,
    ...(payload === undefined ? {} : { payload }),
  };
}

/** Claims of a valid token; an `undefined` in `extra` removes that claim (JSON drops it). */
function claims(extra: Record<string, unknown> = {}): JWTPayload {
  return {
    iss: ISS,
    aud: HUB,
    sub: 'urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6',
    exp: now() + 3600,
    authorization_details: [detail(['publish', 'subscribe'], [{ match: '*' }])],
    ...extra,
  };
}

type SigningKey = CryptoKey | Uint8Array;
const secretKey = (secret = SECRET): Uint8Array => new TextEncoder().encode(secret);

async function sign(
  payload: JWTPayload,
  opts: { alg?: string; key?: SigningKey; header?: Record<string, unknown> } = {},
): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'at+jwt', ...opts.header })
    .sign(opts.key ?? secretKey());
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function expectInvalidToken(promise: Promise<unknown>, reason: RegExp): Promise<void> {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(AuthError);
  expect(err).toMatchObject({ status: 401, error: 'invalid_token' });
  expect((err as AuthError).message).toMatch(reason);
}

async function expectConfigError(s: TokenSettings, reason: RegExp): Promise<void> {
  const err = await rejection(TokenVerifier.create(s));
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).message).toMatch(reason);
}

interface Pair {
  privateKey: CryptoKey;
  spki: string;
  /** The private key imported for another algorithm of its type (WebCrypto keys are per algorithm). */
  signer: (alg: string) => Promise<CryptoKey>;
}

async function pair(alg: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const pkcs8 = await exportPKCS8(privateKey);
  return {
    privateKey,
    spki: await exportSPKI(publicKey),
    signer: (other) => importPKCS8(pkcs8, other),
  };
}

let hs: TokenVerifier;
let rsa: Pair;
let ec: Pair;
let ed: Pair;

beforeAll(async () => {
  hs = await TokenVerifier.create(settings());
  [rsa, ec, ed] = await Promise.all([pair('RS256'), pair('ES256'), pair('EdDSA')]);
});

describe('TokenVerifier.verify accepts valid tokens', () => {
  it('an HS256 token: grants, expiry, subject, issuer', async () => {
    const exp = now() + 600;
    const grants = await hs.verify(await sign(claims({ exp })), 'subscribe', HUB, HUB);
    expect(grants).toMatchObject({
      expiresAt: exp * 1000,
      subject: 'urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6',
      issuer: ISS,
      legacy: false,
    });
    expect(grants.publish).toHaveLength(1);
    expect(grants.subscribe).toHaveLength(1);
    expect(canPublish(grants, ['https://example.com/books/1'])).toBe(true);
    expect(canSubscribe(grants, ['https://example.com/books/1'])).toBe(true);
  });

  it.each([['HS384'], ['HS512']])('%s with the secret', async (alg) => {
    await expect(
      hs.verify(await sign(claims(), { alg }), 'publish', HUB, HUB),
    ).resolves.toBeDefined();
  });

  it.each([
    ['RS256', () => rsa, 'RS256'],
    ['PS256 with the RSA key', () => rsa, 'PS256'],
    ['ES256', () => ec, 'ES256'],
    ['EdDSA', () => ed, 'EdDSA'],
  ])('%s with a PEM public key', async (_name, keys, alg) => {
    const { spki, signer } = keys();
    const verifier = await TokenVerifier.create(settings({ jwtKey: spki }));
    const token = await sign(claims(), { alg, key: await signer(alg) });
    await expect(verifier.verify(token, 'subscribe', HUB, HUB)).resolves.toMatchObject({
      legacy: false,
    });
  });

  it.each([['AT+JWT'], ['application/at+jwt'], ['Application/AT+JWT']])(
    'typ %s (case-insensitive, application/ prefix optional)',
    async (typ) => {
      const token = await sign(claims(), { header: { typ } });
      await expect(hs.verify(token, 'publish', HUB, HUB)).resolves.toBeDefined();
    },
  );

  it('an aud array containing the audience', async () => {
    const token = await sign(claims({ aud: ['https://other.example', HUB] }));
    await expect(hs.verify(token, 'publish', HUB, HUB)).resolves.toBeDefined();
  });

  it('an nbf in the past', async () => {
    const token = await sign(claims({ nbf: now() - 60 }));
    await expect(hs.verify(token, 'publish', HUB, HUB)).resolves.toBeDefined();
  });

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
});

describe('TokenVerifier.verify rejects invalid tokens with 401 invalid_token', () => {
  it.each<[string, () => Promise<string>, RegExp]>([
    ['missing exp', () => sign(claims({ exp: undefined })), /exp is missing/],
    ['expired', () => sign(claims({ exp: now() - 10 })), /ERR_JWT_EXPIRED/],
    ['exp not a number', () => sign(claims({ exp: 'tomorrow' })), /exp/],
    ['nbf in the future', () => sign(claims({ nbf: now() + 600 })), /nbf/],
    ['typ JWT', () => sign(claims(), { header: { typ: 'JWT' } }), /typ "JWT" is not at\+jwt/],
    ['typ of another media type', () => sign(claims(), { header: { typ: 'text/at+jwt' } }), /typ/],
    ['a non-string typ', () => sign(claims(), { header: { typ: 7 } }), /typ 7 is not at\+jwt/],
    ['no typ', () => sign(claims(), { header: { typ: undefined } }), /typ is missing/],
    ['wrong iss', () => sign(claims({ iss: 'https://evil.example' })), /issuer "https:\/\/evil/],
    ['missing iss', () => sign(claims({ iss: undefined })), /iss is missing/],
    [
      'wrong aud',
      () => sign(claims({ aud: 'https://other.example/.well-known/mercure' })),
      /audience/,
    ],
    [
      'aud array without it',
      () => sign(claims({ aud: ['https://a.example', 'https://b.example'] })),
      /audience/,
    ],
    ['missing aud', () => sign(claims({ aud: undefined })), /aud is missing/],
    [
      'signed with another secret',
      () => sign(claims(), { key: secretKey('another secret entirely') }),
      /SIGNATURE_VERIFICATION_FAILED/,
    ],
    [
      'a tampered payload',
      async () => {
        const [h, , s] = (await sign(claims())).split('.');
        return `${String(h)}.${b64url(claims({ sub: 'admin' }))}.${String(s)}`;
      },
      /SIGNATURE_VERIFICATION_FAILED/,
    ],
    [
      'alg none',
      () => Promise.resolve(`${b64url({ alg: 'none', typ: 'at+jwt' })}.${b64url(claims())}.`),
      /ALG_NOT_ALLOWED/,
    ],
    ['not a JWS', () => Promise.resolve('not-a-token'), /ERR_JWS_INVALID/],
    [
      'a payload that is not JSON',
      () =>
        new CompactSign(new TextEncoder().encode('not json'))
          .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
          .sign(secretKey()),
      /ERR_JWT_INVALID/,
    ],
  ])('%s', async (_name, token, reason) => {
    await expectInvalidToken(hs.verify(await token(), 'publish', HUB, HUB), reason);
  });

  it('an HS256 token against an RSA key (algorithm confusion)', async () => {
    const verifier = await TokenVerifier.create(settings({ jwtKey: rsa.spki }));
    // The classic attack: HMAC over the token with the public key text as the secret.
    const token = await sign(claims(), { alg: 'HS256', key: secretKey(rsa.spki) });
    await expectInvalidToken(verifier.verify(token, 'publish', HUB, HUB), /ALG_NOT_ALLOWED/);
  });

  it('an algorithm left out of jwt_algorithms', async () => {
    const verifier = await TokenVerifier.create(
      settings({ jwtKey: rsa.spki, jwtAlgorithms: ['RS256'] }),
    );
    const token = await sign(claims(), { alg: 'PS256', key: await rsa.signer('PS256') });
    await expectInvalidToken(verifier.verify(token, 'publish', HUB, HUB), /ALG_NOT_ALLOWED/);
  });

  it('a jwk or jku header carrying the signer’s own key does not help', async () => {
    const verifier = await TokenVerifier.create(settings({ jwtKey: ec.spki }));
    const attacker = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(attacker.publicKey);
    for (const header of [
      { jwk },
      { jku: 'https://evil.example/jwks.json' },
      { x5u: 'https://evil.example/cert.pem' },
    ]) {
      const token = await sign(claims(), { alg: 'ES256', key: attacker.privateKey, header });
      await expectInvalidToken(
        verifier.verify(token, 'publish', HUB, HUB),
        /SIGNATURE_VERIFICATION_FAILED/,
      );
    }
  });

  it('no key configured at all', async () => {
    const verifier = await TokenVerifier.create(settings({ jwtKey: '', issuers: [] }));
    await expectInvalidToken(
      verifier.verify(await sign(claims()), 'subscribe', HUB, HUB),
      /no key/,
    );
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

describe('TokenVerifier keys and configuration', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'askr-token-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('uses the per-role key, jwt_key for a role without its own', async () => {
    const verifier = await TokenVerifier.create(
      settings({ jwtKey: SECRET, publisherJwtKey: ec.spki, subscriberJwtKey: '' }),
    );
    const publisherToken = await sign(claims(), { alg: 'ES256', key: ec.privateKey });
    const secretToken = await sign(claims());
    await expect(verifier.verify(publisherToken, 'publish', HUB, HUB)).resolves.toBeDefined();
    await expectInvalidToken(
      verifier.verify(publisherToken, 'subscribe', HUB, HUB),
      /ALG_NOT_ALLOWED/,
    );
    await expect(verifier.verify(secretToken, 'subscribe', HUB, HUB)).resolves.toBeDefined();
    await expectInvalidToken(verifier.verify(secretToken, 'publish', HUB, HUB), /ALG_NOT_ALLOWED/);
  });

  it('keeps publisher and subscriber secrets apart', async () => {
    const verifier = await TokenVerifier.create(
      settings({
        jwtKey: '',
        publisherJwtKey: 'publisher-secret-0123456789abcdef',
        subscriberJwtKey: 'subscriber-secret-0123456789abcdef',
      }),
    );
    const pub = await sign(claims(), { key: secretKey('publisher-secret-0123456789abcdef') });
    await expect(verifier.verify(pub, 'publish', HUB, HUB)).resolves.toBeDefined();
    await expectInvalidToken(verifier.verify(pub, 'subscribe', HUB, HUB), /SIGNATURE/);
  });

  it('reads a PEM public key from a file: path and a file:// URL', async () => {
    const path = join(dir, 'ed25519.pem');
    await writeFile(path, `${ed.spki}\n`);
    const token = await sign(claims(), { alg: 'EdDSA', key: ed.privateKey });
    for (const jwtKey of [`file:${path}`, `file://${path}`]) {
      const verifier = await TokenVerifier.create(settings({ jwtKey }));
      await expect(verifier.verify(token, 'publish', HUB, HUB)).resolves.toBeDefined();
    }
  });

  it('reads a secret from a file, without its final line break', async () => {
    const path = join(dir, 'secret');
    await writeFile(path, `${SECRET}\n`);
    const verifier = await TokenVerifier.create(settings({ jwtKey: `file:${path}` }));
    await expect(verifier.verify(await sign(claims()), 'publish', HUB, HUB)).resolves.toBeDefined();
  });

  it('accepts an X.509 certificate and a PKCS#1 RSA public key', async () => {
    const certKey = await importPKCS8(TEST_EC_PRIVATE_KEY, 'ES256');
    const fromCert = await TokenVerifier.create(settings({ jwtKey: TEST_EC_CERTIFICATE }));
    await expect(
      fromCert.verify(await sign(claims(), { alg: 'ES256', key: certKey }), 'publish', HUB, HUB),
    ).resolves.toBeDefined();

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pkcs1 = publicKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const signer = await importPKCS8(
      privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      'RS256',
    );
    const fromPkcs1 = await TokenVerifier.create(settings({ jwtKey: pkcs1 }));
    await expect(
      fromPkcs1.verify(await sign(claims(), { alg: 'RS256', key: signer }), 'publish', HUB, HUB),
    ).resolves.toBeDefined();
  });

  it('allows mixed key types under one allowlist', async () => {
    const verifier = await TokenVerifier.create(
      settings({
        publisherJwtKey: rsa.spki,
        subscriberJwtKey: ed.spki,
        jwtKey: '',
        jwtAlgorithms: ['RS256', 'EdDSA'],
      }),
    );
    const token = await sign(claims(), { alg: 'EdDSA', key: ed.privateKey });
    await expect(verifier.verify(token, 'subscribe', HUB, HUB)).resolves.toBeDefined();
  });

  it.each<[string, () => Partial<TokenSettings>, RegExp]>([
    ['alg none', () => ({ jwtAlgorithms: ['none'] }), /"none" is never accepted/],
    ['alg NONE', () => ({ jwtAlgorithms: ['NONE'] }), /"none" is never accepted/],
    ['an unknown algorithm', () => ({ jwtAlgorithms: ['HS1024'] }), /unknown algorithm "HS1024"/],
    [
      'an algorithm name in the wrong case',
      () => ({ jwtAlgorithms: ['hs256'] }),
      /unknown algorithm "hs256"/,
    ],
    [
      'RS256 with a secret',
      () => ({ jwtAlgorithms: ['RS256'] }),
      /RS256 does not fit jwt_key \(an HMAC secret\)/,
    ],
    [
      'HS256 with an RSA key (confusion)',
      () => ({ jwtKey: rsa.spki, jwtAlgorithms: ['RS256', 'HS256'] }),
      /HS256 does not fit/,
    ],
    [
      'ES384 with a P-256 key',
      () => ({ jwtKey: ec.spki, jwtAlgorithms: ['ES384'] }),
      /ES384 does not fit/,
    ],
    [
      'a key fitting none of the allowlist',
      () => ({ publisherJwtKey: rsa.spki, jwtAlgorithms: ['HS256'] }),
      /publisher_jwt_key: an RSA 2048-bit public key fits none of jwt_algorithms/,
    ],
    ['a private key', () => ({ jwtKey: TEST_EC_PRIVATE_KEY }), /a private key/],
    [
      'a garbage PEM',
      () => ({ jwtKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }),
      /not a usable PEM/,
    ],
    [
      'an unknown PEM type',
      () => ({ subscriberJwtKey: '-----BEGIN SOMETHING-----\nAAAA\n-----END SOMETHING-----' }),
      /subscriber_jwt_key: .*unsupported PEM type/,
    ],
    [
      'an unreadable file',
      () => ({ jwtKey: 'file:/nonexistent/askr/key.pem' }),
      /jwt_key: cannot read file:\/nonexistent/,
    ],
    ['a key without issuers', () => ({ issuers: [] }), /issuers: a JWT key is set but no issuer/],
    [
      'an RSA key under 2048 bits',
      () => ({
        jwtKey: generateKeyPairSync('rsa', { modulusLength: 1024 })
          .publicKey.export({ type: 'spki', format: 'pem' })
          .toString(),
      }),
      /1024 bits; at least 2048/,
    ],
    [
      'an unsupported EC curve',
      () => ({
        jwtKey: generateKeyPairSync('ec', { namedCurve: 'secp256k1' })
          .publicKey.export({ type: 'spki', format: 'pem' })
          .toString(),
      }),
      /curve secp256k1 is not supported/,
    ],
  ])('ConfigError: %s', async (_name, overrides, reason) => {
    await expectConfigError(settings(overrides()), reason);
  });

  it('a key without issuers is allowed in compatibility mode, and no key at all', async () => {
    await expect(
      TokenVerifier.create(settings({ issuers: [], compatibility: true })),
    ).resolves.toBeDefined();
    await expect(
      TokenVerifier.create(settings({ issuers: [], jwtKey: '' })),
    ).resolves.toBeDefined();
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

describe('tokenOf', () => {
  const url = (query = ''): URL => new URL(`${HUB}${query}`);
  const opts = {
    cookieName: '__Secure-mercure_access_token',
    compatibility: false,
    maxTokenSize: 64,
  };
  const compat = { ...opts, compatibility: true };
  const T = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

  /** A request as node:http parses it: repeated Authorization keeps the first, cookies are joined. */
  function request(pairs: [string, string][]): {
    headers: Record<string, string>;
    rawHeaders: string[];
  } {
    const headers: Record<string, string> = {};
    for (const [name, value] of pairs) {
      const key = name.toLowerCase();
      if (key === 'cookie' && headers['cookie'] !== undefined) headers['cookie'] += `; ${value}`;
      else headers[key] ??= value;
    }
    return { headers, rawHeaders: pairs.flat() };
  }

  it.each([['Bearer'], ['bearer'], ['BEARER']])('reads Authorization: %s <token>', (scheme) => {
    expect(tokenOf(request([['Authorization', `${scheme} ${T}`]]), url(), opts)).toEqual({
      token: T,
      via: 'header',
    });
  });

  it('the header wins over the cookie', () => {
    const req = request([
      ['Cookie', `__Secure-mercure_access_token=${T}x`],
      ['Authorization', `Bearer ${T}`],
    ]);
    expect(tokenOf(req, url(), opts)).toEqual({ token: T, via: 'header' });
  });

  it('reads the named cookie among others, quoted or not', () => {
    expect(
      tokenOf(request([['Cookie', `a=1; __Secure-mercure_access_token=${T}; b=2`]]), url(), opts),
    ).toEqual({ token: T, via: 'cookie' });
    expect(
      tokenOf(
        request([
          ['Cookie', 'a=1'],
          ['Cookie', `__Secure-mercure_access_token="${T}"`],
        ]),
        url(),
        opts,
      ),
    ).toEqual({ token: T, via: 'cookie' });
  });

  it('null when nothing is presented; an empty (cleared) cookie counts as none', () => {
    expect(tokenOf(request([]), url(), opts)).toBeNull();
    expect(
      tokenOf(request([['Cookie', '__Secure-mercure_access_token=; other=x']]), url(), opts),
    ).toBeNull();
    expect(tokenOf(request([['Cookie', `mercure_access_token=${T}`]]), url(), opts)).toBeNull();
  });

  it('0.x sources only in compatibility mode, after the configured cookie', () => {
    const legacyCookie = request([['Cookie', `mercureAuthorization=${T}`]]);
    expect(tokenOf(legacyCookie, url(), opts)).toBeNull();
    expect(tokenOf(legacyCookie, url(), compat)).toEqual({ token: T, via: 'cookie' });
    expect(tokenOf(request([]), url(`?authorization=${T}`), opts)).toBeNull();
    expect(tokenOf(request([]), url(`?authorization=${T}`), compat)).toEqual({
      token: T,
      via: 'query',
    });
    const both = request([
      ['Cookie', `mercureAuthorization=${T}legacy; __Secure-mercure_access_token=${T}`],
    ]);
    expect(tokenOf(both, url(`?authorization=${T}query`), compat)).toEqual({
      token: T,
      via: 'cookie',
    });
    expect(tokenOf(legacyCookie, url(`?authorization=${T}query`), compat)).toEqual({
      token: T,
      via: 'cookie',
    });
  });

  it.each<[string, [string, string][], string, typeof opts, RegExp]>([
    ['a non-Bearer scheme', [['Authorization', `Basic ${T}`]], '', opts, /scheme "Basic"/],
    ['an empty Authorization', [['Authorization', '']], '', opts, /empty Authorization/],
    ['Bearer without a token', [['Authorization', 'Bearer']], '', opts, /without a token/],
    ['Bearer and spaces', [['Authorization', 'Bearer   ']], '', opts, /without a token/],
    [
      'two Authorization headers',
      [
        ['Authorization', `Bearer ${T}`],
        ['authorization', `Bearer ${T}`],
      ],
      '',
      opts,
      /several Authorization/,
    ],
    ['a token with a space inside', [['Authorization', `Bearer ${T} x`]], '', opts, /b64token/],
    [
      'a header token over max_token_size',
      [['Authorization', `Bearer ${'a'.repeat(65)}`]],
      '',
      opts,
      /65 bytes, over max_token_size 64/,
    ],
    [
      'a cookie token over max_token_size',
      [['Cookie', `__Secure-mercure_access_token=${'a'.repeat(65)}`]],
      '',
      opts,
      /cookie is 65 bytes/,
    ],
    [
      'a cookie token with bad characters',
      [['Cookie', '__Secure-mercure_access_token=a,b']],
      '',
      opts,
      /b64token/,
    ],
    [
      'two authorization query parameters',
      [],
      `?authorization=${T}&authorization=${T}`,
      compat,
      /several authorization/,
    ],
  ])('400 invalid_request: %s', (_name, pairs, query, options, reason) => {
    let err: unknown;
    try {
      tokenOf(request(pairs), url(query), options);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuthError);
    expect(err).toMatchObject({ status: 400, error: 'invalid_request' });
    expect((err as AuthError).message).toMatch(reason);
  });
});

describe('bearerChallenge', () => {
  it.each<[Parameters<typeof bearerChallenge>[0], string]>([
    [{}, 'Bearer'],
    [
      {
        error: null,
        resourceMetadata:
          'https://hub.example.com/.well-known/oauth-protected-resource/.well-known/mercure',
      },
      'Bearer resource_metadata="https://hub.example.com/.well-known/oauth-protected-resource/.well-known/mercure"',
    ],
    [{ error: 'invalid_token' }, 'Bearer error="invalid_token"'],
    [
      {
        error: 'insufficient_scope',
        description: 'no publish grant',
        resourceMetadata: 'https://h/m',
      },
      'Bearer error="insufficient_scope", error_description="no publish grant", resource_metadata="https://h/m"',
    ],
    [
      { error: 'invalid_request', description: 'a "quoted" \\ value' },
      'Bearer error="invalid_request", error_description="a \\"quoted\\" \\\\ value"',
    ],
    [{ description: 'line\r\nbreak\u00e9' }, 'Bearer error_description="line  break "'],
  ])('%j', (opts, expected) => {
    expect(bearerChallenge(opts)).toBe(expected);
  });
});

// A throwaway P-256 key and its self-signed certificate, for the certificate-as-key test only.
const TEST_EC_PRIVATE_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMaaY7REBL/USgSi6
nO1WhEp+MxgWyUV2CYMHicDA0LihRANCAASz6wgWslh1TXg6y8Yaq2bTkMtyGrP2
vr0CGtrRRAvDBpFVz0p6695x00pew+QDd2eAgiHEkzLf/sdq+aa6b2N+
-----END PRIVATE KEY-----`;
const TEST_EC_CERTIFICATE = `-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUQ3FjjGxY6jmET6I0f2pMLPG3084wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJYXNrci10ZXN0MCAXDTI2MTIwMTAxNDAzMloYDzIxMjYxMTA3
MDE0MDMyWjAUMRIwEAYDVQQDDAlhc2tyLXRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASz6wgWslh1TXg6y8Yaq2bTkMtyGrP2vr0CGtrRRAvDBpFVz0p6695x
00pew+QDd2eAgiHEkzLf/sdq+aa6b2N+o1MwUTAdBgNVHQ4EFgQUIh/5jSWFBJz0
S8awUksg1/B0hpUwHwYDVR0jBBgwFoAUIh/5jSWFBJz0S8awUksg1/B0hpUwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBNP1N3dA/0nPgvqUcf8MQj
bI36J8c766OFivnG6BMcoAIhAMiRg9Nd0RsXgx72Ejz4NQuTQaLOVKkBJNiVBGxu
iRr8
-----END CERTIFICATE-----`;
