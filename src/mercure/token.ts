/**
 * Mercure access tokens: how one is verified (RFC 9068 JWT access token profiled by the Mercure
 * spec "Token Validation"). Where a request presents it is token-presentation.ts, what it grants
 * grants.ts (`authorization_details`, or the 0.x `mercure` claim in compatibility mode), the keys
 * token-keys.ts; their public names are re-exported here.
 * Invariants: keys come only from configuration (never from the token's jwk/jku/x5u headers), the
 * algorithm allowlist is fixed at start, `none` is never accepted, and a token is accepted whole
 * or not at all (one bad Mercure detail rejects it: no partial acceptance). A verifier belongs to
 * one configuration: its caches of verified tokens (token-cache.ts) and compiled patterns
 * (pattern-cache.ts) die with it at reload.
 */
import { errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { ConfigError } from '../errors.ts';
import { detailGrants, isLegacyToken, legacyGrants, type Grants } from './grants.ts';
import type { MatcherLimits, TopicMatcher } from './matchers.ts';
import { PatternCache, type PatternCacheOutcome } from './pattern-cache.ts';
import { TokenCache, type TokenCacheOutcome, type VerifiedToken } from './token-cache.ts';
import {
  importKey,
  keyFor,
  parseKeySetting,
  SUPPORTED_ALGORITHMS,
  type ParsedKey,
  type RoleKey,
} from './token-keys.ts';
import { invalidToken } from './token-presentation.ts';

export {
  canPublish,
  canSubscribe,
  MAX_MERCURE_DETAILS,
  MAX_TOPICS_PER_DETAIL,
  MERCURE_DETAIL_TYPE,
  payloadFor,
  type Grants,
  type SubscribeGrant,
} from './grants.ts';
export { AuthError, bearerChallenge, tokenOf, type AuthErrorCode } from './token-presentation.ts';
export type { PatternCacheOutcome } from './pattern-cache.ts';
export type { TokenCacheOutcome } from './token-cache.ts';

export type Role = 'publish' | 'subscribe';

/** Built from the [mercure] config section. */
export interface TokenSettings {
  issuers: readonly string[];
  jwtKey: string;
  publisherJwtKey: string;
  subscriberJwtKey: string;
  jwtAlgorithms: readonly string[];
  compatibility: boolean;
  maxTokenSize: number;
  maxTopicLength: number;
  /** A grant's URL pattern hit its evaluation time limit (see matchers.ts). */
  onPatternAborted?: (matcher: TopicMatcher) => void;
  /** Verified tokens kept (mercure.token_cache_size); absent or 0: every use verifies. */
  tokenCacheSize?: number;
  /** Compiled patterns shared (mercure.pattern_cache_size); absent or 0: none shared. */
  patternCacheSize?: number;
  /** Each token cache lookup (hit, miss) and eviction, to count them. */
  onTokenCache?: (outcome: TokenCacheOutcome) => void;
  /** Each compiled-pattern cache lookup (hit, miss) and eviction, to count them. */
  onPatternCache?: (outcome: PatternCacheOutcome) => void;
}

/** Verifies access tokens for one configuration; build a new one at reload. */
export class TokenVerifier {
  readonly #publisher: RoleKey | undefined;
  readonly #subscriber: RoleKey | undefined;
  readonly #issuers: ReadonlySet<string>;
  readonly #compatibility: boolean;
  readonly #grantLimits: MatcherLimits;
  readonly #tokens: TokenCache;
  /**
   * Compiled URL patterns and URI templates of this configuration, shared by the grants of the
   * tokens it verifies and by subscribe matchers (subscribe.ts): N subscribers with the same
   * pattern compile it once.
   */
  readonly patterns: PatternCache;

  private constructor(
    publisher: RoleKey | undefined,
    subscriber: RoleKey | undefined,
    settings: TokenSettings,
  ) {
    this.#publisher = publisher;
    this.#subscriber = subscriber;
    this.#issuers = new Set(settings.issuers);
    this.#compatibility = settings.compatibility;
    this.#tokens = new TokenCache(settings.tokenCacheSize ?? 0, settings.onTokenCache);
    this.patterns = new PatternCache(settings.patternCacheSize ?? 0, settings.onPatternCache);
    this.#grantLimits = { maxLength: settings.maxTopicLength, patterns: this.patterns };
    if (settings.onPatternAborted !== undefined) {
      this.#grantLimits.onEvaluationAborted = settings.onPatternAborted;
    }
  }

  /**
   * Imports the keys: an HMAC secret, or a PEM public key (SPKI, PKCS#1 RSA) or X.509
   * certificate, inline or as "file:/path". Throws ConfigError for an unreadable or bad key, a
   * private key, an unknown algorithm, `none`, an algorithm fitting none of the keys, a key that
   * fits no allowed algorithm, or (compatibility off) a key with no issuers. No key at all is
   * allowed: every presented token is then invalid_token.
   */
  static async create(settings: TokenSettings): Promise<TokenVerifier> {
    for (const alg of settings.jwtAlgorithms) {
      if (alg.toLowerCase() === 'none') {
        throw new ConfigError(
          '[mercure] jwt_algorithms: "none" is never accepted (unsigned tokens, RFC 8725 section 3.1)',
        );
      }
      if (!SUPPORTED_ALGORITHMS.has(alg)) {
        throw new ConfigError(
          `[mercure] jwt_algorithms: unknown algorithm ${JSON.stringify(alg)}; allowed: ${[...SUPPORTED_ALGORITHMS].join(', ')}`,
        );
      }
    }
    const shared = await parseKeySetting('jwt_key', settings.jwtKey);
    const publisherOwn = await parseKeySetting('publisher_jwt_key', settings.publisherJwtKey);
    const subscriberOwn = await parseKeySetting('subscriber_jwt_key', settings.subscriberJwtKey);
    const publisherKey = publisherOwn ?? shared;
    const subscriberKey = subscriberOwn ?? shared;
    const used = [publisherKey, subscriberKey].filter((k) => k !== undefined);

    // With per-role keys of different types one allowlist serves both: each key takes the
    // allowed algorithms that fit it; an allowed algorithm must fit at least one key in use.
    for (const alg of settings.jwtAlgorithms) {
      if (used.length > 0 && !used.some((k) => k.fits.includes(alg))) {
        throw new ConfigError(
          `[mercure] jwt_algorithms: ${alg} does not fit ${used.map((k) => `${k.setting} (${k.description})`).join(' nor ')}`,
        );
      }
    }
    if (used.length > 0 && settings.issuers.length === 0 && !settings.compatibility) {
      throw new ConfigError(
        '[mercure] issuers: a JWT key is set but no issuer is accepted; list the `iss` values of your tokens (e.g. the app URL)',
      );
    }
    const imported = new Map<ParsedKey, RoleKey>();
    const importOnce = async (key: ParsedKey | undefined): Promise<RoleKey | undefined> => {
      if (key === undefined) return undefined;
      let roleKey = imported.get(key);
      if (roleKey === undefined) {
        roleKey = await importKey(key, settings.jwtAlgorithms);
        imported.set(key, roleKey);
      }
      return roleKey;
    };
    const publisher = await importOnce(publisherKey);
    const subscriber = await importOnce(subscriberKey);
    return new TokenVerifier(publisher, subscriber, settings);
  }

  /**
   * Verifies `token` for `role` against `audience` (the hub's resource identifier). `hubUrl` is
   * the base of relative URL patterns. Resolves to the grants; throws AuthError(401,
   * 'invalid_token') with a precise reason for any failure. A token this verifier already verified
   * for the same role, audience and hub URL skips the signature and claim checks (its cache),
   * `nbf` and `exp` checked again against the clock.
   */
  async verify(token: string, role: Role, audience: string, hubUrl: string): Promise<Grants> {
    const key = role === 'publish' ? this.#publisher : this.#subscriber;
    if (key === undefined) {
      throw invalidToken(`no key is configured to verify ${role} tokens`);
    }
    const cacheKey = TokenCache.keyOf(token, role, audience, hubUrl);
    let cached: VerifiedToken | undefined;
    try {
      cached = this.#tokens.get(cacheKey);
    } catch (err) {
      throw invalidToken(describeJoseError(err), err); // expired since: jose's own error
    }
    if (cached !== undefined) return this.#grantsOf(cached.payload, cached.legacy, hubUrl);
    let payload: JWTPayload;
    let header: { typ?: string | undefined };
    try {
      // A function key lets the token pick among our keys by its (allowlisted) alg, never supply
      // one: jose checks `alg` against `algorithms` before calling it.
      const result = await jwtVerify(token, (h) => keyFor(key, h.alg), {
        algorithms: [...key.algorithms],
      });
      payload = result.payload;
      header = result.protectedHeader;
    } catch (err) {
      throw invalidToken(describeJoseError(err), err);
    }
    const legacy = this.#compatibility && isLegacyToken(payload);
    if (!legacy) this.#checkAccessTokenClaims(header, payload, audience);
    const grants = this.#grantsOf(payload, legacy, hubUrl);
    // Only now, every check passed: a failure above is never cached.
    this.#tokens.set(cacheKey, { payload, legacy, exp: payload.exp, nbf: payload.nbf });
    return grants;
  }

  /**
   * The grants of a verified payload, built for each request: its matchers are this request's
   * own (a grant pattern aborted at its time limit stays off for this stream or publish only, as
   * without the cache), their compiled patterns shared through `patterns`. Throws invalid_token
   * for a malformed claim (deterministic: a payload that once passed passes again).
   */
  #grantsOf(payload: JWTPayload, legacy: boolean, hubUrl: string): Grants {
    const grants = legacy
      ? legacyGrants(payload, hubUrl, this.#grantLimits)
      : detailGrants(payload['authorization_details'], hubUrl, this.#grantLimits);
    return {
      ...grants,
      expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
      subject: typeof payload.sub === 'string' ? payload.sub : undefined,
      issuer: typeof payload.iss === 'string' ? payload.iss : undefined,
      legacy,
    };
  }

  /** RFC 9068 section 4 as profiled by the Mercure spec; jose already enforced exp/nbf if present. */
  #checkAccessTokenClaims(
    header: { typ?: string | undefined },
    payload: JWTPayload,
    audience: string,
  ): void {
    // RFC 7515 section 4.1.9: compared case-insensitively, the "application/" prefix omitted.
    // jose types the header but does not check it: typ may be any JSON value.
    const raw: unknown = header.typ;
    const typ = typeof raw === 'string' ? raw.toLowerCase().replace(/^application\//, '') : raw;
    if (typ !== 'at+jwt') {
      throw invalidToken(
        raw === undefined
          ? 'header typ is missing (at+jwt required)'
          : `header typ ${JSON.stringify(raw)} is not at+jwt`,
      );
    }
    if (typeof payload.exp !== 'number') throw invalidToken('claim exp is missing');
    if (typeof payload.iss !== 'string') throw invalidToken('claim iss is missing');
    if (!this.#issuers.has(payload.iss)) {
      throw invalidToken(`issuer ${JSON.stringify(payload.iss)} is not in [mercure] issuers`);
    }
    const aud = payload.aud;
    if (aud === undefined) throw invalidToken('claim aud is missing');
    if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
      throw invalidToken(
        `audience ${JSON.stringify(aud)} does not contain ${JSON.stringify(audience)}`,
      );
    }
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JOSEError) return `${err.code}: ${err.message}`;
  return `token rejected: ${err instanceof Error ? err.message : String(err)}`;
}
