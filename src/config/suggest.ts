/**
 * "Did you mean …?" for unknown config names: the closest schema keys by edit distance, first in
 * the section the name was written in, then across every section (a key put in the wrong one).
 * Pure: no I/O. Names compare case-insensitively, with `-` and `_` treated alike.
 */
import { schema } from './schema.ts';

/**
 * Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions of
 * two neighbours each cost 1 ("grant_secert" is 1 from "grant_secret").
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, at(i - 2, j - 2) + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return at(a.length, b.length);
}

const normal = (name: string): string => name.toLowerCase().replace(/-/g, '_');

/**
 * How far `typed` is from `candidate`, or null when too far to be a typo: at most a third of the
 * longer name (at least 1), or one name is the other plus a suffix ("listen_addr" for "listen").
 */
function closeness(typed: string, candidate: string, maxDistance?: number): number | null {
  const a = normal(typed);
  const b = normal(candidate);
  if (a === b) return 0;
  const distance = editDistance(a, b);
  const limit = maxDistance ?? Math.max(1, Math.floor(Math.max(a.length, b.length) / 3));
  if (distance <= limit) return distance;
  if (maxDistance !== undefined) return null;
  const [short, long] = a.length < b.length ? [a, b] : [b, a];
  if (short.length >= 4 && long.startsWith(`${short}_`)) return distance;
  return null;
}

/**
 * The closest of `candidates` to `typed` (ties kept, in candidate order), or [] when none is
 * close; `maxDistance` replaces the default "a third of the name" limit.
 */
export function closest(
  typed: string,
  candidates: readonly string[],
  maxDistance?: number,
): string[] {
  let best = Infinity;
  let out: string[] = [];
  for (const candidate of candidates) {
    const d = closeness(typed, candidate, maxDistance);
    if (d === null || d > best) continue;
    if (d < best) out = [];
    best = d;
    out.push(candidate);
  }
  return out;
}

/** A schema key, as "section.key". */
export interface KeySuggestion {
  section: string;
  key: string;
}

const sections = (): Array<[string, string[]]> =>
  Object.entries(schema).map(([section, fields]) => [section, Object.keys(fields)]);

/**
 * Keys `key` (typed in [section]) may have meant: the closest keys of that section; when none is
 * close, the closest keys of other sections (at most 3). An exact name in another section always
 * counts, even when the own section has a near one ("redis_url" in [server]).
 */
export function suggestKey(section: string, key: string): KeySuggestion[] {
  const own = sections().find(([s]) => s === section)?.[1] ?? [];
  const elsewhere = sections().filter(([s]) => s !== section);
  const exactElsewhere = elsewhere
    .filter(([, keys]) => keys.some((k) => normal(k) === normal(key)))
    .map(([s, keys]) => ({ section: s, key: keys.find((k) => normal(k) === normal(key)) ?? key }));
  if (exactElsewhere.length > 0) return exactElsewhere.slice(0, 3);
  const near = closest(key, own);
  if (near.length > 0) return near.map((k) => ({ section, key: k }));
  const all = elsewhere.flatMap(([s, keys]) => keys.map((k) => `${s}.${k}`));
  const byKey = closest(
    key,
    all.map((p) => p.slice(p.indexOf('.') + 1)),
  );
  const picked = all.filter((p) => byKey.includes(p.slice(p.indexOf('.') + 1)));
  return picked.slice(0, 3).map((p) => {
    const dot = p.indexOf('.');
    return { section: p.slice(0, dot), key: p.slice(dot + 1) };
  });
}

/** Sections `name` may have meant ("servr" → "server"), or [] when none is close. */
export function suggestSection(name: string): string[] {
  return closest(
    name,
    sections().map(([s]) => s),
  );
}

/** Sections that have a key named `key` (for a key written outside any section). */
export function sectionsWithKey(key: string): string[] {
  return sections()
    .filter(([, keys]) => keys.includes(key))
    .map(([s]) => s);
}

/**
 * For an ASKR_* environment variable that names no config key: the variable it may have meant
 * ("ASKR_SERVR_LISTEN" → "ASKR_SERVER_LISTEN"), or null. The whole name is compared, so a typo in
 * the section part is found too. At most 2 edits: the PHP side has ASKR_* variables of its own
 * (ASKR_SOCKET, ASKR_MAX_CHANNEL_NAME_LENGTH) that are near config names but not typos.
 */
export function suggestEnvName(name: string): string | null {
  const all = sections().flatMap(([s, keys]) =>
    keys.map((k) => `ASKR_${s.toUpperCase()}_${k.toUpperCase()}`),
  );
  const near = closest(name.toUpperCase(), all, 2);
  return near.length === 1 ? (near[0] ?? null) : null;
}

/** "did you mean "grant_secret"?" / "did you mean [cluster] redis_url?" / "" when none. */
export function didYouMeanKey(section: string, suggestions: readonly KeySuggestion[]): string {
  if (suggestions.length === 0) return '';
  const names = suggestions.map((s) =>
    s.section === section ? JSON.stringify(s.key) : `[${s.section}] ${s.key}`,
  );
  const belongs = suggestions.every((s) => s.section !== section)
    ? ' (that key belongs in another section)'
    : '';
  return `did you mean ${names.join(' or ')}?${belongs}`;
}
