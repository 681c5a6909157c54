/**
 * Who may publish through the Pushpin-compatible API ([grip], src/broadcast/pushpin-publish.ts).
 * Pushpin itself checks nothing on its publish port (5561, bound to localhost); the GRIP
 * publishers (@fanoutio/grip's PublisherClient and its siblings) send one of three headers, all
 * accepted here:
 *
 *   control_iss + key  ─▶ Authorization: Bearer <JWT {iss, exp} signed HS256 with key>
 *   key alone          ─▶ Authorization: Bearer <key>          (Fastly Fanout's API token form)
 *   user + pass        ─▶ Authorization: Basic base64(user:pass)
 *
 * Invariants: keys are parsed once per config (start, reload), a bad one is a ConfigError naming
 * the key; secrets are compared in constant time; a refusal says why in words of ours only (it
 * never echoes what the client sent, so it may be logged).
 */
import { errors as joseErrors, jwtVerify } from 'jose';
import { ConfigError } from '../errors.ts';
import { decodeBase64Strict } from './base64.ts';
import { secretMatches } from './secret-match.ts';

/** The [grip] keys this reads. */
export interface GripAuthConfig {
  publish_key: string;
  publish_iss: string;
  publish_user: string;
  publish_password: string;
}

/** HMAC algorithms a publisher may sign with (the GRIP libraries use HS256 for a shared key). */
const ALGORITHMS = ['HS256', 'HS384', 'HS512'];
/** Publishers' clocks may be a little off (the libraries sign exp = now + 10 min or 1 h). */
const CLOCK_TOLERANCE_S = 30;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
export const REALM = 'askr-grip';

export class GripAuth {
  readonly #key: Uint8Array | null;
  readonly #keyText: string;
  readonly #iss: string;
  readonly #user: string;
  readonly #password: string;

  /** @throws ConfigError naming the [grip] key that is unusable. */
  constructor(config: GripAuthConfig) {
    this.#keyText = config.publish_key;
    this.#key = parseKey(config.publish_key);
    this.#iss = config.publish_iss;
    this.#user = config.publish_user;
    this.#password = config.publish_password;
    if ((this.#user === '') !== (this.#password === '')) {
      throw new ConfigError(
        'grip.publish_user and grip.publish_password go together: set both for Basic auth, or neither',
      );
    }
    if (this.#iss !== '' && this.#key === null) {
      throw new ConfigError('grip.publish_iss is set but grip.publish_key is empty: set the key');
    }
  }

  /** False when no way to authenticate is configured: publishing is off. */
  get enabled(): boolean {
    return this.#key !== null || this.#user !== '';
  }

  /** WWW-Authenticate challenges of the configured schemes. */
  challenges(): string[] {
    const out: string[] = [];
    if (this.#key !== null) out.push(`Bearer realm="${REALM}"`);
    if (this.#user !== '') out.push(`Basic realm="${REALM}", charset="UTF-8"`);
    return out;
  }

  /** Resolves null when `header` (the Authorization header) may publish, else why it may not. */
  async check(header: string | undefined): Promise<string | null> {
    if (header === undefined || header === '')
      return `no Authorization header: ${this.#expected()}`;
    const space = header.indexOf(' ');
    const scheme = (space === -1 ? header : header.slice(0, space)).toLowerCase();
    const value = space === -1 ? '' : header.slice(space + 1).trim();
    if (scheme === 'bearer') return this.#bearer(value);
    if (scheme === 'basic') return this.#basic(value);
    return `the Authorization scheme is neither Bearer nor Basic: ${this.#expected()}`;
  }

  async #bearer(token: string): Promise<string | null> {
    if (this.#key === null) return 'Bearer auth is off (grip.publish_key is empty)';
    // The key itself (a Publisher with `key` and no control_iss), whatever it looks like.
    if (this.#iss === '' && secretMatches(token, this.#keyText)) return null;
    if (!JWT_SHAPE.test(token)) {
      return this.#iss === ''
        ? 'the bearer token is neither a JWT nor grip.publish_key'
        : 'a bare bearer token is refused while grip.publish_iss is set: give the publisher control_iss so it signs a JWT';
    }
    try {
      await jwtVerify(token, this.#key, {
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_S,
        ...(this.#iss === '' ? {} : { issuer: this.#iss }),
      });
      return null;
    } catch (err) {
      return describeJwtError(err);
    }
  }

  #basic(encoded: string): string | null {
    if (this.#user === '') return 'Basic auth is off (grip.publish_user is empty)';
    const decoded = decodeBase64Strict(encoded)?.toString('utf8');
    const colon = decoded?.indexOf(':') ?? -1;
    if (decoded === undefined || colon === -1)
      return 'the Basic credentials are not base64 of "user:password"';
    // Both compared, always: the time taken says nothing about which one was wrong.
    const userOk = secretMatches(decoded.slice(0, colon), this.#user);
    const passwordOk = secretMatches(decoded.slice(colon + 1), this.#password);
    return userOk && passwordOk
      ? null
      : 'the Basic credentials do not match grip.publish_user / grip.publish_password';
  }

  #expected(): string {
    const ways: string[] = [];
    if (this.#key !== null) {
      ways.push(
        this.#iss === ''
          ? 'Bearer: a JWT signed with grip.publish_key, or the key itself'
          : `Bearer: a JWT signed with grip.publish_key, iss "${this.#iss}"`,
      );
    }
    if (this.#user !== '') ways.push('Basic: grip.publish_user and grip.publish_password');
    return `send ${ways.join('; or ')}`;
  }
}

/** The HMAC key of `publish_key`: "" none, "base64:…" decoded, else its UTF-8 bytes. */
function parseKey(text: string): Uint8Array | null {
  if (text === '') return null;
  if (text.startsWith('-----BEGIN ')) {
    throw new ConfigError(
      'grip.publish_key: PEM keys are not supported; use a shared secret (HS256, as Pushpin and Fanout realm keys are)',
    );
  }
  if (!text.startsWith('base64:')) return new TextEncoder().encode(text);
  const bytes = decodeBase64Strict(text.slice('base64:'.length));
  if (bytes === null || bytes.length === 0) {
    throw new ConfigError('grip.publish_key: "base64:" is not followed by base64 of the key');
  }
  return new Uint8Array(bytes);
}

function describeJwtError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) {
    return "the publish JWT has expired (exp); check the publisher's clock";
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return 'the publish JWT has another iss than grip.publish_iss';
    if (err.reason === 'missing') return `the publish JWT has no ${err.claim} claim`;
    return `the publish JWT's ${err.claim} claim is not valid (${err.reason})`;
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return 'the publish JWT is not signed with grip.publish_key';
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return `the publish JWT's alg is not accepted (${ALGORITHMS.join(', ')} with grip.publish_key)`;
  }
  if (err instanceof joseErrors.JOSEError) return `the publish JWT is malformed (${err.code})`;
  return 'the publish JWT cannot be verified';
}
