/**
 * Pure header logic of the static file server: validators (ETag, Last-Modified), conditional
 * requests in RFC 9110 §13.2.2 order, Range / If-Range parsing and Accept-Encoding negotiation.
 * Invariants: no I/O; every date comparison is in whole seconds (HTTP-date resolution); a header
 * we cannot parse is ignored (the full file is a correct answer), never an error.
 */

import type { Stats } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';

/** One byte range, both ends inclusive and within the file (as in Content-Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/** What a GET/HEAD for one representation should get. */
export type Decision =
  | { kind: 'not-modified' }
  | { kind: 'precondition-failed' }
  | { kind: 'full' }
  | { kind: 'unsatisfiable' }
  | { kind: 'ranges'; ranges: ByteRange[] };

/** Content codings we serve from precompressed siblings. */
export type Encoding = 'br' | 'gzip';

// Bound on the ranges of one request (nginx `max_ranges` idea): a request for thousands of tiny
// ranges costs a multipart header each. Over it, the Range header is ignored (full 200).
export const MAX_RANGES = 64;

/** nginx's format, `"<mtime seconds hex>-<size hex>"`, so client caches survive a switch from nginx. */
export function etagOf(stat: Stats): string {
  return `"${mtimeSeconds(stat).toString(16)}-${stat.size.toString(16)}"`;
}

/** Last-Modified value: IMF-fixdate in UTC, e.g. `Tue, 02 Jan 2024 03:04:05 GMT`. */
export function lastModifiedOf(stat: Stats): string {
  return new Date(mtimeSeconds(stat) * 1000).toUTCString();
}

function mtimeSeconds(stat: Stats): number {
  return Math.floor(stat.mtimeMs / 1000);
}

function parseHttpDate(value: string | undefined): number | null {
  if (value === undefined) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

/**
 * Decides the answer for a GET or HEAD from the request headers and the file's stat, in RFC 9110
 * §13.2.2 order: If-Match, else If-Unmodified-Since (412); If-None-Match, else If-Modified-Since
 * (304); then If-Range and Range, which apply only when `rangeable` (the identity file).
 */
export function decide(headers: IncomingHttpHeaders, stat: Stats, rangeable: boolean): Decision {
  const etag = etagOf(stat);
  const mtime = mtimeSeconds(stat);
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    if (!etagListMatches(ifMatch, etag, false)) return { kind: 'precondition-failed' };
  } else {
    const since = parseHttpDate(headers['if-unmodified-since']);
    if (since !== null && mtime > since) return { kind: 'precondition-failed' };
  }
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (etagListMatches(ifNoneMatch, etag, true)) return { kind: 'not-modified' };
  } else {
    const since = parseHttpDate(headers['if-modified-since']);
    if (since !== null && mtime <= since) return { kind: 'not-modified' };
  }
  const range = headers.range;
  if (range === undefined || !rangeable) return { kind: 'full' };
  // Not in Node's list of singleton headers, so typed as possibly repeated; one value is expected.
  const ifRange = headers['if-range'];
  if (ifRange !== undefined && !ifRangeMatches(String(ifRange).trim(), etag, mtime)) {
    return { kind: 'full' };
  }
  const ranges = parseByteRanges(range, stat.size);
  if (ranges === null) return { kind: 'full' };
  return ranges.length === 0 ? { kind: 'unsatisfiable' } : { kind: 'ranges', ranges };
}

/**
 * If-Match (strong) / If-None-Match (weak) comparison with our strong etag (RFC 9110 §8.8.3.2).
 * `*` matches any current representation; unquoted garbage never matches.
 */
function etagListMatches(header: string, etag: string, weak: boolean): boolean {
  if (header.trim() === '*') return true;
  for (const m of header.matchAll(/(W\/)?("[^"]*")/g)) {
    if (m[1] !== undefined && !weak) continue;
    if (m[2] === etag) return true;
  }
  return false;
}

/** If-Range: an entity tag must match strongly; a date must equal Last-Modified (§13.1.5). */
function ifRangeMatches(value: string, etag: string, mtime: number): boolean {
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag;
  return parseHttpDate(value) === mtime;
}

/**
 * Parses a Range header for a representation of `size` bytes (RFC 9110 §14.1.2). Returns null when
 * the header is to be ignored and the whole file sent: another unit, bad syntax, more than
 * MAX_RANGES ranges, or ranges adding up to more than the file (overlap abuse; nginx declines the
 * same way). Returns [] when no range is satisfiable (416), else the satisfiable ranges in request
 * order, clamped to the file.
 */
export function parseByteRanges(header: string, size: number): ByteRange[] | null {
  const eq = header.indexOf('=');
  if (eq === -1 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return null;
  // Empty list elements are legal (RFC 9110 §5.6.1) and skipped.
  const specs = header
    .slice(eq + 1)
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length === 0 || specs.length > MAX_RANGES) return null;
  const ranges: ByteRange[] = [];
  let total = 0;
  for (const spec of specs) {
    const match = /^(\d*)-(\d*)$/.exec(spec);
    const first = match?.[1] ?? '';
    const last = match?.[2] ?? '';
    if (match === null || (first === '' && last === '')) return null;
    let range: ByteRange;
    if (first === '') {
      // Suffix form `-n`: the last n bytes; `-0` and any suffix of an empty file are unsatisfiable.
      const suffix = Number(last);
      if (suffix === 0 || size === 0) continue;
      range = { start: Math.max(0, size - suffix), end: size - 1 };
    } else {
      const start = Number(first);
      const end = last === '' ? Infinity : Number(last);
      if (end < start) return null;
      if (start >= size) continue;
      range = { start, end: Math.min(end, size - 1) };
    }
    total += range.end - range.start + 1;
    if (total > size) return null;
    ranges.push(range);
  }
  return ranges;
}

/**
 * Encodings the client accepts among br and gzip, best first: by q-value, br before gzip on a tie.
 * q=0 refuses a coding; `*` covers codings not named; `x-gzip` is gzip (RFC 9110 §12.5.3); a
 * malformed qvalue counts as 0. No header means none (identity is sent, as nginx gzip_static does).
 */
export function acceptedEncodings(header: string | undefined): Encoding[] {
  if (header === undefined) return [];
  const q = new Map<string, number>();
  for (const element of header.split(',')) {
    const [coding = '', ...params] = element.split(';').map((s) => s.trim());
    if (coding === '') continue;
    let value = 1;
    for (const param of params) {
      if (!/^q\s*=/i.test(param)) continue;
      const m = /^q\s*=\s*(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/i.exec(param);
      value = m === null ? 0 : Number(m[1]);
    }
    q.set(coding.toLowerCase(), value);
  }
  const star = q.get('*') ?? 0;
  const ranked: [Encoding, number][] = [
    ['br', q.get('br') ?? star],
    ['gzip', q.get('gzip') ?? q.get('x-gzip') ?? star],
  ];
  // Array.prototype.sort is stable, so br stays first when the q-values tie.
  return ranked
    .filter(([, value]) => value > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([encoding]) => encoding);
}
