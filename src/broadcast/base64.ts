/**
 * Strict base64 (RFC 4648 §4, the standard alphabet) for what GRIP publishers send: `content-bin`
 * items, "base64:" keys and Basic credentials. Node's decoder skips characters outside the
 * alphabet; a publish must not silently lose bytes, so anything but canonical base64 (padding
 * optional) is refused.
 */

const ALPHABET = /^[A-Za-z0-9+/]*$/;

/** The decoded bytes, or null when `text` is not base64 (a stray character, a lone last char). */
export function decodeBase64Strict(text: string): Buffer | null {
  const unpadded = text.endsWith('==')
    ? text.slice(0, -2)
    : text.endsWith('=')
      ? text.slice(0, -1)
      : text;
  if (!ALPHABET.test(unpadded) || unpadded.length % 4 === 1) return null;
  if (unpadded.length !== text.length && text.length % 4 !== 0) return null;
  const bytes = Buffer.from(unpadded, 'base64');
  // Trailing bits that are not zero mean another encoder's text, not ours to guess about.
  return bytes.toString('base64').replace(/=+$/, '') === unpadded ? bytes : null;
}
