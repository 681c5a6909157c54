/**
 * Constant-time comparison of a secret a client sent with the configured one, the one home for
 * it (HTTP publish's bearer token, GRIP publishing's key and Basic credentials). Both sides are
 * hashed first, so neither the content nor the length of the secret leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** True when `given` equals `expected`; never for an empty `expected` (a secret not set). */
export function secretMatches(given: string | undefined, expected: string): boolean {
  if (expected === '' || given === undefined) return false;
  return timingSafeEqual(digest(given), digest(expected));
}
