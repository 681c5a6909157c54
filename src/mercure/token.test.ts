// Mercure access token verification (RFC 9068 profile of the Mercure spec) and its configured
// keys. Tokens are real JWS signed with jose. A regression here looks like a forged, expired,
// mistyped or mis-addressed token being accepted, or a bad key configuration starting.
// Grants are tested in grants.test.ts, presentation and the Bearer challenge in
// token-presentation.test.ts.
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
  type CryptoKey,
} from 'jose';
import {
  b64url,
  claims,
  expectInvalidToken,
  HUB,
  ISS,
  now,
  rejection,
  SECRET,
  secretKey,
  settings,
  sign,
} from '../../test/helpers/token-fixtures.ts';
import { ConfigError } from '../errors.ts';
import { canPublish, canSubscribe } from './grants.ts';
import { TokenVerifier, type TokenSettings } from './token.ts';

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
