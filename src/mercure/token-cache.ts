/**
 * Verified Mercure access tokens (issue 13: jose on WebCrypto costs 63-77 µs per HS256 verify, on
 * every publish and subscribe, and publishers reuse one token). Bounded by a count (LRU,
 * mercure.token_cache_size); one cache per TokenVerifier, which is rebuilt at every reload, so a
 * key rotation, a new issuer list or a compatibility change never serves an entry verified under
 * the old rules.
 * Invariants: only a token that passed every check is kept, with its claims; every use re-checks
 * `nbf` and `exp` against the clock exactly as jose does (an expired token is refused as it would be
 * without the cache, and dropped); a failure is never kept, so nothing here can refuse a token.
 */
import { errors as joseErrors, type JWTPayload } from 'jose';
import { BoundedLru } from './lru.ts';

/**
 * A token that passed verification: its claims (the grants are built from them per request, so
 * each request has matchers of its own) and the time claims to re-check on every use.
 */
export interface VerifiedToken {
  /** As jose returned it; never modified (requests presenting the token share it). */
  readonly payload: Readonly<JWTPayload>;
  /** A 0.x `mercure` claim token (compatibility mode). */
  readonly legacy: boolean;
  /** `exp`, `nbf` in seconds since the epoch (NumericDate), as jose read them; undefined: absent. */
  readonly exp: number | undefined;
  readonly nbf: number | undefined;
}

/** What a lookup did: served a verified token, found none, or pushed one out of the bound. */
export type TokenCacheOutcome = 'hit' | 'miss' | 'evict';

/** jose's clock: whole seconds (jwt_claims_set.js `epoch`), so hit and miss agree to the second. */
const epochSeconds = (): number => Math.floor(Date.now() / 1000);

/** The verified tokens of one TokenVerifier (see the file header). */
export class TokenCache {
  readonly #entries: BoundedLru<string, VerifiedToken>;
  readonly #onOutcome: ((outcome: TokenCacheOutcome) => void) | undefined;

  /** `maxEntries`: tokens kept (0: none, every use verifies). */
  constructor(maxEntries: number, onOutcome?: (outcome: TokenCacheOutcome) => void) {
    this.#onOutcome = onOutcome;
    this.#entries = new BoundedLru(maxEntries, () => onOutcome?.('evict'));
  }

  /** Tokens held now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The cache key of `token` verified for `role` against `audience`, with relative patterns of its
   * grants resolved against `hubUrl`. The whole token is the key, nothing hashed or truncated: a
   * hit needs byte for byte the string whose signature jose verified, so a lookup cannot forge
   * anything (a tampered, re-signed or look-alike token is another key and is verified in full).
   * The Map lookup is not constant-time, and need not be: it compares the presented string with
   * strings that passed, and at most tells whether this very string passed recently; it compares
   * no key material and no signature (signatures are only checked by jose, WebCrypto verify, on a
   * miss). Length prefixes keep the fields apart whatever characters a Host header put in the URLs.
   */
  static keyOf(token: string, role: string, audience: string, hubUrl: string): string {
    return `${role} ${audience.length}:${audience} ${hubUrl.length}:${hubUrl} ${token}`;
  }

  /**
   * The verified token under `key`, its `nbf` and `exp` checked against the clock now. Throws
   * jose's own JWTClaimValidationFailed (nbf) or JWTExpired (exp) for a token that is no longer
   * valid, as jwtVerify would (same checks, order and messages), and drops an expired one.
   */
  get(key: string): VerifiedToken | undefined {
    const entry = this.#entries.get(key);
    this.#onOutcome?.(entry === undefined ? 'miss' : 'hit');
    if (entry === undefined) return undefined;
    const now = epochSeconds();
    const claims: JWTPayload = {};
    if (entry.exp !== undefined) claims.exp = entry.exp;
    if (entry.nbf !== undefined) claims.nbf = entry.nbf;
    // jwt_claims_set.js: nbf first, `nbf > now`; then `exp <= now` (no clock tolerance).
    if (entry.nbf !== undefined && entry.nbf > now) {
      throw new joseErrors.JWTClaimValidationFailed(
        '"nbf" claim timestamp check failed',
        claims,
        'nbf',
        'check_failed',
      );
    }
    if (entry.exp !== undefined && entry.exp <= now) {
      this.#entries.delete(key);
      throw new joseErrors.JWTExpired(
        '"exp" claim timestamp check failed',
        claims,
        'exp',
        'check_failed',
      );
    }
    return entry;
  }

  /** Keeps a token that passed every check (never call it for one that failed). */
  set(key: string, verified: VerifiedToken): void {
    this.#entries.set(key, verified);
  }
}
