/**
 * How a config value is shown to people, in `check-config --print` and in error messages, without
 * its secrets: keys the schema marks `secret: "value"` show "****", URLs anywhere show their
 * password as "***" (cluster.redis_url, proxy routes), and table entries whose name says secret
 * (fpm.env DB_PASSWORD, APP_KEY) are masked. Invariant: no secret leaves through these functions.
 */
import { redactRedisUrl } from '../cluster/redis-url.ts';
import type { Field } from './schema.ts';

/** The stand-in for a secret's value. */
export const MASK = '****';

/** Names of table entries that hold secrets (environment variables passed to PHP, headers). */
const SECRET_NAME = /secret|token|passw|pwd|key|auth|credential|private|salt/i;

/** True when an entry named `name` (e.g. an fpm.env variable) is treated as a secret. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** A string with the userinfo password of a URL in it masked (any scheme, valid URL or not). */
function redactUrls(text: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? redactRedisUrl(text) : text;
}

function maskTree(value: unknown): unknown {
  if (typeof value === 'string') return redactUrls(value);
  if (Array.isArray(value)) return value.map(maskTree);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, isSecretName(k) && v !== '' ? MASK : maskTree(v)]),
    );
  }
  return value;
}

/**
 * `value` (resolved or raw) with its secrets replaced, plus a note for a masked secret
 * ("secret, set: 64 characters"). An empty secret is shown as it is: "not set" is no secret.
 */
export function maskValue(
  field: Field | undefined,
  value: unknown,
): { value: unknown; note: string | null } {
  if (field?.secret === 'value' && value !== '' && value !== undefined) {
    // Code points, as people count characters of a token; no grapheme clustering is needed.
    const length = typeof value === 'string' ? `: ${Array.from(value).length} characters` : '';
    return { value: MASK, note: `secret, set${length}` };
  }
  const masked = maskTree(value);
  const changed = JSON.stringify(masked) !== JSON.stringify(value);
  return { value: masked, note: changed ? 'secrets masked' : null };
}

/** `value` as a message shows it: JSON, with secrets masked (a secret as `****`, unquoted). */
export function describeValue(field: Field | undefined, value: unknown): string {
  const { value: shown } = maskValue(field, value);
  if (shown === MASK && field?.secret === 'value') return MASK;
  try {
    return JSON.stringify(shown) ?? String(shown);
  } catch {
    return String(shown);
  }
}
