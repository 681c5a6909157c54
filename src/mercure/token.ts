/**
 * Mercure access tokens: where a request presents one (RFC 6750 header, cookie, 0.x fallbacks),
 * how it is verified (RFC 9068 JWT access token profiled by the Mercure spec "Token Validation")
 * and what it grants (`authorization_details`, or the 0.x `mercure` claim in compatibility mode).
 * Invariants: keys come only from configuration (never from the token's jwk/jku/x5u headers), the
 * algorithm allowlist is fixed at start, `none` is never accepted, and a token is accepted whole
 * or not at all (one bad Mercure detail rejects it: no partial acceptance).
 */
import { readFile } from 'node:fs/promises';
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import { errors as joseErrors, importSPKI, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import { ConfigError } from '../errors.ts';
import {
  compileMatcher,
  MatcherError,
  type MatcherLimits,
  type MatcherType,
  type TopicMatcher,
} from './matchers.ts';

export type Role = 'publish' | 'subscribe';

export interface SubscribeGrant {
  matcher: TopicMatcher;
  /** The detail's `payload` (any JSON value); undefined when the detail has none. */
  payload: unknown;
}

export interface Grants {
  publish: TopicMatcher[];
  /** In token order: payload selection takes the first grant whose matcher matches. */
  subscribe: SubscribeGrant[];
  /** From `exp`, in ms since the epoch; undefined only for a 0.x token without `exp`. */
  expiresAt: number | undefined;
  subject: string | undefined;
  issuer: string | undefined;
  /** A 0.x `mercure` claim token (compatibility mode only). */
  legacy: boolean;
}

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
}

export type AuthErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

/**
 * An authorization failure, in RFC 6750 terms: the endpoint answers `status` with a
 * `WWW-Authenticate: Bearer` challenge carrying `error` (none when null: no token presented).
 * The message is precise, for the log; the client is not told why a token failed.
 */
export class AuthError extends Error {
  readonly status: 400 | 401 | 403;
  readonly error: AuthErrorCode | null;

  constructor(
    status: 400 | 401 | 403,
    error: AuthErrorCode | null,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AuthError';
    this.status = status;
    this.error = error;
  }
}

/** The RFC 9396 authorization detail type of the Mercure spec, compared byte by byte. */
export const MERCURE_DETAIL_TYPE = 'https://mercure.rocks/authorization-detail';

/** Implementation-defined limits of spec "Authorization Details"; over them: invalid_token. */
export const MAX_MERCURE_DETAILS = 64;
export const MAX_TOPICS_PER_DETAIL = 256;

/** What jose can verify. `none` is deliberately absent (RFC 8725 section 3.1). */
const SUPPORTED_ALGORITHMS = new Set([
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]);

/** jose refuses shorter RSA keys at verification time; refuse them at start instead. */
const MIN_RSA_BITS = 2048;

const EC_ALGORITHM_BY_CURVE: Readonly<Record<string, string>> = {
  prime256v1: 'ES256',
  secp384r1: 'ES384',
  secp521r1: 'ES512',
};

type VerificationKey = CryptoKey | Uint8Array;

/** A configured key, imported once per algorithm it may verify. */
interface RoleKey {
  readonly setting: string;
  readonly algorithms: readonly string[];
  readonly byAlgorithm: ReadonlyMap<string, VerificationKey>;
}

/** A key as read from configuration, before import. */
interface ParsedKey {
  readonly setting: string;
  readonly description: string;
  /** Algorithms the key type can verify, and the subset used when no allowlist is configured. */
  readonly fits: readonly string[];
  readonly defaults: readonly string[];
  readonly load: (alg: string) => Promise<VerificationKey>;
}

/** Verifies access tokens for one configuration; build a new one at reload. */
export class TokenVerifier {
  readonly #publisher: RoleKey | undefined;
  readonly #subscriber: RoleKey | undefined;
  readonly #issuers: ReadonlySet<string>;
  readonly #compatibility: boolean;
  readonly #maxTopicLength: number;
  readonly #onPatternAborted: ((matcher: TopicMatcher) => void) | undefined;

  private constructor(
    publisher: RoleKey | undefined,
    subscriber: RoleKey | undefined,
    settings: TokenSettings,
  ) {
    this.#publisher = publisher;
    this.#subscriber = subscriber;
    this.#issuers = new Set(settings.issuers);
    this.#compatibility = settings.compatibility;
    this.#maxTopicLength = settings.maxTopicLength;
    this.#onPatternAborted = settings.onPatternAborted;
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
   * 'invalid_token') with a precise reason for any failure.
   */
  async verify(token: string, role: Role, audience: string, hubUrl: string): Promise<Grants> {
    const key = role === 'publish' ? this.#publisher : this.#subscriber;
    if (key === undefined) {
      throw invalidToken(`no key is configured to verify ${role} tokens`);
    }
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
    const limits: MatcherLimits = { maxLength: this.#maxTopicLength };
    if (this.#onPatternAborted !== undefined) limits.onEvaluationAborted = this.#onPatternAborted;
    const grants = legacy
      ? legacyGrants(payload, hubUrl, limits)
      : detailGrants(payload['authorization_details'], hubUrl, limits);
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

function invalidToken(message: string, cause?: unknown): AuthError {
  return new AuthError(401, 'invalid_token', message, { cause });
}

function keyFor(key: RoleKey, alg: string | undefined): VerificationKey {
  const found = alg === undefined ? undefined : key.byAlgorithm.get(alg);
  // Unreachable: jose checked alg against the allowlist, and every allowed alg has a key.
  if (found === undefined) throw new Error(`no ${String(alg)} key in ${key.setting}`);
  return found;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JOSEError) return `${err.code}: ${err.message}`;
  return `token rejected: ${err instanceof Error ? err.message : String(err)}`;
}

// ---------------------------------------------------------------------------------------------
// Keys

async function parseKeySetting(setting: string, value: string): Promise<ParsedKey | undefined> {
  if (value === '') return undefined;
  let material = value;
  const fromFile = value.startsWith('file:');
  if (fromFile) {
    const path = value.startsWith('file://') ? fileURLToPath(value) : value.slice('file:'.length);
    try {
      material = await readFile(path, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `[mercure] ${setting}: cannot read ${value}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    // Editors end files with a line break; it is never part of a secret.
    material = material.replace(/\r?\n$/, '');
    if (material === '') throw new ConfigError(`[mercure] ${setting}: ${value} is empty`);
  }
  const trimmed = material.trim();
  if (trimmed.startsWith('-----BEGIN ')) return parsePem(setting, trimmed);
  const secret = new TextEncoder().encode(material);
  return {
    setting,
    description: 'an HMAC secret',
    fits: ['HS256', 'HS384', 'HS512'],
    defaults: ['HS256', 'HS384', 'HS512'],
    load: () => Promise.resolve(secret),
  };
}

function parsePem(setting: string, pem: string): ParsedKey {
  const label = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem)?.[1] ?? '';
  if (label.includes('PRIVATE KEY')) {
    throw new ConfigError(
      `[mercure] ${setting}: a private key (${label}); give the hub only the public key (PEM "PUBLIC KEY") or a certificate`,
    );
  }
  let keyObject: KeyObject;
  try {
    if (label === 'CERTIFICATE') keyObject = new X509Certificate(pem).publicKey;
    else if (label === 'PUBLIC KEY' || label === 'RSA PUBLIC KEY') keyObject = createPublicKey(pem);
    else throw new Error(`unsupported PEM type "${label}"`);
  } catch (err) {
    throw new ConfigError(
      `[mercure] ${setting}: not a usable PEM public key or certificate: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const spki = keyObject.export({ type: 'spki', format: 'pem' }).toString();
  const load = (alg: string): Promise<CryptoKey> => importSPKI(spki, alg);
  const type = keyObject.asymmetricKeyType;
  const details = keyObject.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new ConfigError(
        `[mercure] ${setting}: RSA key of ${bits} bits; at least ${MIN_RSA_BITS} are required`,
      );
    }
    const algorithms =
      type === 'rsa'
        ? ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
        : ['PS256', 'PS384', 'PS512'];
    return {
      setting,
      description: `an ${type.toUpperCase()} ${bits}-bit public key`,
      fits: algorithms,
      defaults: algorithms,
      load,
    };
  }
  if (type === 'ec') {
    const curve = details.namedCurve ?? '';
    const alg = EC_ALGORITHM_BY_CURVE[curve];
    if (alg === undefined) {
      throw new ConfigError(
        `[mercure] ${setting}: EC curve ${curve} is not supported (P-256, P-384, P-521)`,
      );
    }
    return {
      setting,
      description: `an EC ${curve} public key`,
      fits: [alg],
      defaults: [alg],
      load,
    };
  }
  if (type === 'ed25519') {
    // "Ed25519" is the fully-specified name of the same algorithm (RFC 9864); allowed if listed.
    return {
      setting,
      description: 'an Ed25519 public key',
      fits: ['EdDSA', 'Ed25519'],
      defaults: ['EdDSA'],
      load,
    };
  }
  throw new ConfigError(
    `[mercure] ${setting}: ${String(type)} keys are not supported (RSA, EC P-256/384/521, Ed25519)`,
  );
}

async function importKey(key: ParsedKey, allowlist: readonly string[]): Promise<RoleKey> {
  const algorithms =
    allowlist.length === 0 ? key.defaults : allowlist.filter((alg) => key.fits.includes(alg));
  if (algorithms.length === 0) {
    throw new ConfigError(
      `[mercure] ${key.setting}: ${key.description} fits none of jwt_algorithms (${allowlist.join(', ')}); it verifies ${key.fits.join(', ')}`,
    );
  }
  const byAlgorithm = new Map<string, VerificationKey>();
  for (const alg of algorithms) {
    try {
      byAlgorithm.set(alg, await key.load(alg));
    } catch (err) {
      throw new ConfigError(
        `[mercure] ${key.setting}: cannot import ${key.description} for ${alg}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
  return { setting: key.setting, algorithms, byAlgorithm };
}

// ---------------------------------------------------------------------------------------------
// Grants

type Limits = MatcherLimits;
type PartialGrants = Pick<Grants, 'publish' | 'subscribe'>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function compile(
  type: MatcherType,
  pattern: string,
  hubUrl: string,
  limits: Limits,
  where: string,
): TopicMatcher {
  if (pattern === '') throw invalidToken(`${where}: empty matcher`);
  try {
    return compileMatcher(type, pattern, hubUrl, limits);
  } catch (err) {
    if (err instanceof MatcherError) throw invalidToken(`${where}: ${err.message}`, err);
    throw err;
  }
}

/** Spec "Authorization Details" and "Topic Matcher List": any defect rejects the whole token. */
function detailGrants(claim: unknown, hubUrl: string, limits: Limits): PartialGrants {
  const grants: PartialGrants = { publish: [], subscribe: [] };
  if (claim === undefined) return grants; // valid, grants nothing
  if (!Array.isArray(claim)) throw invalidToken('authorization_details is not an array');
  let mercureDetails = 0;
  for (const [i, detail] of claim.entries()) {
    const where = `authorization_details[${i}]`;
    if (!isObject(detail)) throw invalidToken(`${where} is not an object`);
    if (detail['type'] !== MERCURE_DETAIL_TYPE) continue; // another API's detail (RFC 9396)
    if (++mercureDetails > MAX_MERCURE_DETAILS) {
      throw invalidToken(`more than ${MAX_MERCURE_DETAILS} Mercure authorization details`);
    }
    const { actions, topics } = detail;
    if (!Array.isArray(actions) || actions.length === 0) {
      throw invalidToken(`${where}.actions is not a non-empty array`);
    }
    if (!actions.every((a) => typeof a === 'string')) {
      throw invalidToken(`${where}.actions has a non-string entry`);
    }
    if (!Array.isArray(topics) || topics.length === 0) {
      throw invalidToken(`${where}.topics is not a non-empty array`);
    }
    if (topics.length > MAX_TOPICS_PER_DETAIL) {
      throw invalidToken(`${where}.topics has more than ${MAX_TOPICS_PER_DETAIL} entries`);
    }
    const matchers = topics.map((entry, j) => {
      const at = `${where}.topics[${j}]`;
      if (!isObject(entry)) throw invalidToken(`${at} is not an object`);
      const { match, match_type: type = 'exact' } = entry;
      if (typeof match !== 'string') throw invalidToken(`${at}.match is not a string`);
      // Case-sensitive; an unsupported type cannot be evaluated, so it cannot be skipped.
      if (type !== 'exact' && type !== 'urlpattern') {
        throw invalidToken(`${at}.match_type ${JSON.stringify(type)} is not exact or urlpattern`);
      }
      return compile(type, match, hubUrl, limits, at);
    });
    // Unknown actions grant nothing and do not invalidate (spec: forward compatibility).
    if (actions.includes('publish')) grants.publish.push(...matchers);
    if (actions.includes('subscribe')) {
      const payload = Object.hasOwn(detail, 'payload') ? detail['payload'] : undefined;
      for (const matcher of matchers) grants.subscribe.push({ matcher, payload });
    }
  }
  return grants;
}

const LEGACY_CLAIMS = ['mercure', 'https://mercure.rocks/'] as const;

/**
 * A 0.x token: a `mercure` (or namespaced) claim and no `authorization_details`. A token carrying
 * both is a 1.0 token, fully validated, its legacy claim ignored (as the Mercure hub does).
 */
function isLegacyToken(payload: JWTPayload): boolean {
  return (
    !Object.hasOwn(payload, 'authorization_details') &&
    LEGACY_CLAIMS.some((claim) => Object.hasOwn(payload, claim))
  );
}

/** 0.x `mercure: {publish: [...], subscribe: [...], payload}`: strings and URI Templates. */
function legacyGrants(payload: JWTPayload, hubUrl: string, limits: Limits): PartialGrants {
  const name = Object.hasOwn(payload, 'mercure') ? 'mercure' : 'https://mercure.rocks/';
  const claim = payload[name];
  if (!isObject(claim)) throw invalidToken(`claim ${name} is not an object`);
  const selectors = (key: 'publish' | 'subscribe'): TopicMatcher[] => {
    const list = claim[key];
    if (list === undefined) return [];
    const where = `${name}.${key}`;
    if (!Array.isArray(list)) throw invalidToken(`${where} is not an array`);
    if (list.length > MAX_TOPICS_PER_DETAIL) {
      throw invalidToken(`${where} has more than ${MAX_TOPICS_PER_DETAIL} entries`);
    }
    return list.map((selector, i) => {
      if (typeof selector !== 'string') throw invalidToken(`${where}[${i}] is not a string`);
      return compile('uritemplate', selector, hubUrl, limits, `${where}[${i}]`);
    });
  };
  const legacyPayload = claim['payload'];
  return {
    publish: selectors('publish'),
    subscribe: selectors('subscribe').map((matcher) => ({ matcher, payload: legacyPayload })),
  };
}

/** Does some subscribe grant match any of the update's topics (canonical or alternate)? */
export function canSubscribe(grants: Grants | null, topics: readonly string[]): boolean {
  if (grants === null) return false;
  return topics.some((topic) => grants.subscribe.some((g) => g.matcher.matches(topic)));
}

/** Is every topic of the update matched by some publish grant? No topic: false (nothing granted). */
export function canPublish(grants: Grants, topics: readonly string[]): boolean {
  if (topics.length === 0) return false;
  return topics.every((topic) => grants.publish.some((m) => m.matches(topic)));
}

/**
 * The payload of a subscription whose own matcher string is `match`: that of the first subscribe
 * grant whose matcher matches `match` treated as a topic (spec "Payloads"). A 0.x token's payload
 * is token-wide, so it applies even when no grant matches (as in Mercure 0.x).
 */
export function payloadFor(grants: Grants | null, match: string): unknown {
  if (grants === null) return undefined;
  const found = grants.subscribe.find((g) => g.matcher.matches(match));
  if (found !== undefined) return found.payload;
  return grants.legacy ? grants.subscribe[0]?.payload : undefined;
}

// ---------------------------------------------------------------------------------------------
// Presentation (spec "Presenting the Access Token", RFC 6750 section 2)

/** RFC 6750 section 2.1 b64token; a compact JWS uses a subset of it. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

const LEGACY_COOKIE = 'mercureAuthorization';
const LEGACY_QUERY = 'authorization';

function invalidRequest(message: string): AuthError {
  return new AuthError(400, 'invalid_request', message);
}

function checked(token: string, via: string, maxTokenSize: number): string {
  const bytes = Buffer.byteLength(token);
  if (bytes > maxTokenSize) {
    throw invalidRequest(`token in ${via} is ${bytes} bytes, over max_token_size ${maxTokenSize}`);
  }
  if (!B64TOKEN.test(token))
    throw invalidRequest(`token in ${via} has characters outside b64token`);
  return token;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    const value = pair.slice(eq + 1).trim();
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"')
      ? value.slice(1, -1)
      : value;
  }
  return undefined;
}

/**
 * Where the token came from: the Authorization header (scheme Bearer, case-insensitive; it wins
 * over any cookie), else the cookie `cookieName`, else — compatibility only — the
 * `mercureAuthorization` cookie, then the `authorization` query parameter. An empty cookie (a
 * cleared one) counts as absent. Returns null when none is presented. Throws AuthError(400,
 * 'invalid_request') for a malformed presentation: a non-Bearer or empty Authorization, several
 * Authorization headers, several `authorization` parameters, a token that is not a b64token or is
 * over maxTokenSize.
 */
export function tokenOf(
  req: { headers: IncomingHttpHeaders; rawHeaders: string[] },
  url: URL,
  opts: { cookieName: string; compatibility: boolean; maxTokenSize: number },
): { token: string; via: 'header' | 'cookie' | 'query' } | null {
  // Node keeps only the first of repeated Authorization headers: count them in rawHeaders.
  let authorizations = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]?.toLowerCase() === 'authorization') authorizations++;
  }
  if (authorizations > 1) throw invalidRequest('several Authorization headers');
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const value = authorization.trim();
    if (value === '') throw invalidRequest('empty Authorization header');
    const space = value.search(/[ \t]/);
    const scheme = space === -1 ? value : value.slice(0, space);
    if (scheme.toLowerCase() !== 'bearer') {
      throw invalidRequest(`Authorization scheme ${JSON.stringify(scheme)} is not Bearer`);
    }
    const token = space === -1 ? '' : value.slice(space + 1).trim();
    if (token === '') throw invalidRequest('Authorization: Bearer without a token');
    return { token: checked(token, 'the Authorization header', opts.maxTokenSize), via: 'header' };
  }
  const cookieNames = opts.compatibility ? [opts.cookieName, LEGACY_COOKIE] : [opts.cookieName];
  for (const name of cookieNames) {
    const token = cookieValue(req.headers.cookie, name);
    if (token !== undefined && token !== '') {
      return { token: checked(token, `the ${name} cookie`, opts.maxTokenSize), via: 'cookie' };
    }
  }
  if (opts.compatibility) {
    // 0.x only: RFC 9700 forbids tokens in URLs, and 1.0 dropped this parameter.
    const values = url.searchParams.getAll(LEGACY_QUERY).filter((v) => v !== '');
    if (values.length > 1) throw invalidRequest(`several ${LEGACY_QUERY} query parameters`);
    const token = values[0];
    if (token !== undefined) {
      return {
        token: checked(token, `the ${LEGACY_QUERY} query parameter`, opts.maxTokenSize),
        via: 'query',
      };
    }
  }
  return null;
}

/** RFC 9110 quoted-string: CTLs and non-ASCII become spaces, `"` and `\` are escaped. */
function quoted(value: string): string {
  const visible = value.replace(/[^\x20-\x7e]/g, ' ');
  return `"${visible.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/**
 * The WWW-Authenticate value (RFC 6750 section 3): `Bearer`, then `error`, `error_description`
 * and `resource_metadata` (RFC 9728) when given, each a quoted-string.
 */
export function bearerChallenge(opts: {
  error?: string | null;
  description?: string;
  resourceMetadata?: string;
}): string {
  const params: string[] = [];
  if (opts.error !== undefined && opts.error !== null) params.push(`error=${quoted(opts.error)}`);
  if (opts.description !== undefined) params.push(`error_description=${quoted(opts.description)}`);
  if (opts.resourceMetadata !== undefined) {
    params.push(`resource_metadata=${quoted(opts.resourceMetadata)}`);
  }
  return params.length === 0 ? 'Bearer' : `Bearer ${params.join(', ')}`;
}
