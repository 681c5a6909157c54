/**
 * Fixtures of the access token unit tests (src/mercure/token, grants and token-presentation tests):
 * verifier settings, claims of a valid 1.0 token (each overridable so a test can break exactly
 * one), real JWS signed with jose, and the expectation of a 401 invalid_token rejection.
 */
import { expect } from 'vitest';
import { SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { MERCURE_DETAIL_TYPE } from '../../src/mercure/grants.ts';
import type { TokenSettings } from '../../src/mercure/token.ts';
import { AuthError } from '../../src/mercure/token-presentation.ts';

export const HUB = 'https://hub.example.com/.well-known/mercure';
export const ISS = 'https://app.example.com';
export const SECRET = 'a-test-secret-that-is-long-enough-for-hs512!';
export const now = (): number => Math.floor(Date.now() / 1000);

export function settings(overrides: Partial<TokenSettings> = {}): TokenSettings {
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
export function detail(
  actions: unknown[],
  topics: unknown[],
  payload?: unknown,
): Record<string, unknown> {
  return {
    type: MERCURE_DETAIL_TYPE,
    actions,
    topics,
    ...(payload === undefined ? {} : { payload }),
  };
}

/** Claims of a valid token; an `undefined` in `extra` removes that claim (JSON drops it). */
export function claims(extra: Record<string, unknown> = {}): JWTPayload {
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
export const secretKey = (secret = SECRET): Uint8Array => new TextEncoder().encode(secret);

/** A JWS of `payload`: HS256 with SECRET and typ at+jwt unless `opts` says otherwise. */
export async function sign(
  payload: JWTPayload,
  opts: { alg?: string; key?: SigningKey; header?: Record<string, unknown> } = {},
): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', typ: 'at+jwt', ...opts.header })
    .sign(opts.key ?? secretKey());
}

/** base64url of the JSON of `value`, to forge a part of a JWS. */
export const b64url = (value: unknown): string =>
  Buffer.from(JSON.stringify(value)).toString('base64url');

/** What `promise` rejects with; throws when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Expects a 401 invalid_token AuthError whose message (for the log) matches `reason`. */
export async function expectInvalidToken(promise: Promise<unknown>, reason: RegExp): Promise<void> {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(AuthError);
  expect(err).toMatchObject({ status: 401, error: 'invalid_token' });
  expect((err as AuthError).message).toMatch(reason);
}
