/**
 * X-Accel-Redirect / X-Sendfile: PHP names a file and the sidecar serves it (nginx `internal`
 * locations). Only targets inside `static.internal_locations` are allowed, so a compromised or
 * buggy app cannot make the sidecar read arbitrary files.
 */
import { normalize, resolve, sep } from 'node:path';

/**
 * X-Accel-Redirect carries a URI under a configured prefix ("/protected/a.pdf" with
 * { "/protected/" = "/srv/private" } -> /srv/private/a.pdf); X-Sendfile carries a filesystem path
 * that must lie inside one of the configured directories. Returns null when not allowed.
 */
export function resolveInternalTarget(
  target: string,
  isSendfile: boolean,
  locations: Readonly<Record<string, string>>,
): string | null {
  if (/[\0\r\n]/.test(target)) return null;
  if (isSendfile) {
    const path = normalize(target);
    for (const dir of Object.values(locations)) {
      const base = resolve(dir);
      if (path.startsWith(base + sep)) return path;
    }
    return null;
  }
  let uri: string;
  try {
    uri = decodeURIComponent(target.split('?')[0] ?? '');
  } catch {
    return null;
  }
  for (const [prefix, dir] of Object.entries(locations)) {
    if (!uri.startsWith(prefix)) continue;
    const base = resolve(dir);
    const path = resolve(base, '.' + sep + uri.slice(prefix.length));
    if (path.startsWith(base + sep)) return path;
  }
  return null;
}
