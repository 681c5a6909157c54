/**
 * Parses the CGI response head that PHP writes at the start of FCGI_STDOUT: header lines ended by
 * a blank line (CRLF or bare LF, as php-fpm may emit either). Push-based and pure: feed chunks,
 * get the head once complete plus the body bytes that followed it in the same chunk.
 */

export interface CgiHead {
  /** From `Status:` (default 200; 302 when only `Location:` is given, per RFC 3875 6.2.3 practice). */
  status: number;
  statusText: string | null;
  /** Every header except Status, in order, names as sent (Set-Cookie may repeat). */
  headers: Array<[string, string]>;
}

export type CgiParseResult =
  { done: false } | { done: true; head: CgiHead; rest: Buffer } | { done: false; error: string };

/** Incremental parser for the CGI head. `maxHeadBytes` bounds memory (the FPM side is untrusted too). */
/** Shared by every parser: an empty Buffer is immutable. */
const EMPTY = Buffer.alloc(0);

export class CgiHeadParser {
  private buffered: Buffer = EMPTY;
  private readonly maxHeadBytes: number;

  constructor(maxHeadBytes: number) {
    this.maxHeadBytes = maxHeadBytes;
  }

  push(chunk: Buffer): CgiParseResult {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = findHeadEnd(this.buffered);
    if (end === null) {
      if (this.buffered.length > this.maxHeadBytes) {
        return { done: false, error: `PHP response headers exceed ${this.maxHeadBytes} bytes` };
      }
      return { done: false };
    }
    const headText = this.buffered.subarray(0, end.headEnd).toString('latin1');
    const rest = this.buffered.subarray(end.bodyStart);
    this.buffered = EMPTY;
    const parsed = parseHeadText(headText);
    if (typeof parsed === 'string') return { done: false, error: parsed };
    return { done: true, head: parsed, rest };
  }

  /** At end of stream without a blank line: PHP printed headers only (or nothing). */
  finish(): CgiParseResult {
    const text = this.buffered.toString('latin1');
    this.buffered = EMPTY;
    const parsed = parseHeadText(text.replace(/\r?\n$/, ''));
    if (typeof parsed === 'string') return { done: false, error: parsed };
    return { done: true, head: parsed, rest: EMPTY };
  }
}

function findHeadEnd(buf: Buffer): { headEnd: number; bodyStart: number } | null {
  // The head ends at the first empty line: "\n\n" or "\n\r\n" (a CRLF line before it or not).
  const lf = buf.indexOf('\n\n');
  const crlf = buf.indexOf('\n\r\n');
  if (lf === -1 && crlf === -1) return null;
  if (crlf === -1 || (lf !== -1 && lf < crlf)) return { headEnd: lf, bodyStart: lf + 2 };
  return { headEnd: crlf, bodyStart: crlf + 3 };
}

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseHeadText(text: string): CgiHead | string {
  const headers: Array<[string, string]> = [];
  let status: number | null = null;
  let statusText: string | null = null;
  let hasLocation = false;
  if (text.length === 0) return { status: 200, statusText: null, headers };
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return `malformed header line from PHP: ${JSON.stringify(line.slice(0, 80))}`;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!TOKEN_RE.test(name)) return `invalid header name from PHP: ${JSON.stringify(name)}`;
    const lower = name.toLowerCase();
    if (lower === 'status') {
      const m = /^(\d{3})(?:\s+(.*))?$/.exec(value);
      const code = m ? Number(m[1]) : NaN;
      if (!m || code < 100 || code > 999)
        return `invalid Status header from PHP: ${JSON.stringify(value)}`;
      status = code;
      statusText = m[2] ?? null;
      continue;
    }
    if (lower === 'location') hasLocation = true;
    headers.push([name, value]);
  }
  return { status: status ?? (hasLocation ? 302 : 200), statusText, headers };
}

/**
 * A header of a parsed CGI head by lowercase name: the first value, or with `join` every value
 * joined with ", " (list headers such as X-Askr-Subscribe may be repeated).
 */
export function cgiHeader(head: CgiHead, lowerName: string, join = false): string | undefined {
  let found: string | undefined;
  for (const [name, value] of head.headers) {
    if (name.toLowerCase() !== lowerName) continue;
    if (!join) return value;
    found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}
