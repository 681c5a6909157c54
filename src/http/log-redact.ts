/**
 * What the access log may record of a request target: credentials carried in the query string
 * (an SSE subscription grant in an EventSource URL, a Mercure 0.x `authorization` token, an OAuth
 * `access_token`) are replaced by REDACTED, so log files never hold a usable credential. Pure.
 */

/** Query parameter names whose values are credentials (compared case-insensitively). */
const SECRET_PARAMS = new Set(['grant', 'authorization', 'access_token']);
const MARK = 'REDACTED';

/** The target with the values of credential parameters replaced; the rest byte for byte. */
export function redactTarget(target: string): string {
  const q = target.indexOf('?');
  if (q === -1) return target;
  const query = target.slice(q + 1);
  let changed = false;
  const parts = query.split('&').map((part) => {
    const eq = part.indexOf('=');
    const rawName = eq === -1 ? part : part.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(rawName.replace(/\+/g, ' ')).toLowerCase();
    } catch {
      name = rawName.toLowerCase();
    }
    if (eq === -1 || !SECRET_PARAMS.has(name)) return part;
    changed = true;
    return `${rawName}=${MARK}`;
  });
  return changed ? `${target.slice(0, q)}?${parts.join('&')}` : target;
}
