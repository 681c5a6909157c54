/**
 * The keys that verify Mercure access tokens, from configuration only (never from a token's
 * jwk/jku/x5u headers): an HMAC secret, or a PEM public key (SPKI, PKCS#1 RSA) or X.509
 * certificate, inline or as "file:/path", imported once per algorithm it may verify. Invariants:
 * every defect is a ConfigError at start; `none` is not a supported algorithm.
 */
import { readFile } from 'node:fs/promises';
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { importSPKI, type CryptoKey } from 'jose';
import { ConfigError } from '../errors.ts';

/** What jose can verify. `none` is deliberately absent (RFC 8725 section 3.1). */
export const SUPPORTED_ALGORITHMS = new Set([
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

export type VerificationKey = CryptoKey | Uint8Array;

/** A configured key, imported once per algorithm it may verify. */
export interface RoleKey {
  readonly setting: string;
  readonly algorithms: readonly string[];
  readonly byAlgorithm: ReadonlyMap<string, VerificationKey>;
}

/** A key as read from configuration, before import. */
export interface ParsedKey {
  readonly setting: string;
  readonly description: string;
  /** Algorithms the key type can verify, and the subset used when no allowlist is configured. */
  readonly fits: readonly string[];
  readonly defaults: readonly string[];
  readonly load: (alg: string) => Promise<VerificationKey>;
}

/** The key of `key` for `alg`, which jose already checked against the allowlist. */
export function keyFor(key: RoleKey, alg: string | undefined): VerificationKey {
  const found = alg === undefined ? undefined : key.byAlgorithm.get(alg);
  // Unreachable: jose checked alg against the allowlist, and every allowed alg has a key.
  if (found === undefined) throw new Error(`no ${String(alg)} key in ${key.setting}`);
  return found;
}

/**
 * The key configured by `setting` (jwt_key, publisher_jwt_key or subscriber_jwt_key), undefined
 * when `value` is empty. A "file:" value is read, without its final line break. Throws ConfigError
 * for an unreadable or empty file, a private key, a PEM that is not a usable public key or
 * certificate, an RSA key under 2048 bits, or an unsupported curve or key type.
 */
export async function parseKeySetting(
  setting: string,
  value: string,
): Promise<ParsedKey | undefined> {
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

/**
 * `key` imported once per algorithm it may verify: those of `allowlist` that fit it, or its
 * defaults when the allowlist is empty. Throws ConfigError when none fits or an import fails.
 */
export async function importKey(key: ParsedKey, allowlist: readonly string[]): Promise<RoleKey> {
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
