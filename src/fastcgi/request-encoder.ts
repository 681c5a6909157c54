/**
 * Encodes the head of a FastCGI request in one buffer: BEGIN_REQUEST, the CGI params as PARAMS
 * records (whole pairs per record, as php-src requires), the empty PARAMS record and, for a body
 * known in advance, STDIN and its end, so that a request goes to FPM in one write. Pure.
 * Invariants: the bytes are those of encodeNameValuePair for every pair, whatever path encodes
 * them (all-ASCII strings by one latin1 write per record, anything else exactly); padding is zero.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';
import { FCGI_HEADER_LEN, RecordType } from './constants.ts';
import { writeNameValueLength, type NameValueData } from './name-value.ts';
import {
  MAX_RECORD_CONTENT,
  paddingFor,
  streamDataSize,
  writeHeader,
  writeStreamData,
} from './record-codec.ts';

/**
 * Encode CGI params as FCGI_PARAMS records followed by the empty PARAMS record. Pairs are packed
 * whole into records because php-src parses each PARAMS record on its own (fcgi_get_params): a
 * pair that straddles two records is rejected. So one pair may be at most MAX_RECORD_CONTENT
 * bytes encoded; a longer one throws SidecarError FCGI_PARAMS_TOO_LARGE before anything is sent.
 * `prefix` (the BEGIN_REQUEST record) is copied in first: a request head is one allocation.
 */
export function encodeParams(
  requestId: number,
  pairs: Iterable<readonly [NameValueData, NameValueData]>,
  prefix?: Buffer,
): Buffer {
  return encodeHead(requestId, pairs, prefix, undefined);
}

/**
 * A whole request whose body is known (none, or a Buffer): `begin` (the BEGIN_REQUEST record),
 * the params as encodeParams lays them out, the body as STDIN records and the empty STDIN record,
 * in one Buffer, so that it goes to FPM in one write. Throws like encodeParams.
 */
export function encodeRequest(
  requestId: number,
  begin: Buffer,
  pairs: Iterable<readonly [NameValueData, NameValueData]>,
  stdin: Buffer | null,
): Buffer {
  return encodeHead(requestId, pairs, begin, stdin ?? EMPTY);
}

const EMPTY = Buffer.alloc(0);

/** Any character outside ASCII: such a string's UTF-8 bytes differ from its characters. */
// eslint-disable-next-line no-control-regex -- the ASCII range is the point
const NON_ASCII_RE = /[^\u0000-\u007f]/;

/** `stdin` undefined: PARAMS only (the body streams after it); else STDIN and its end follow. */
function encodeHead(
  requestId: number,
  pairs: Iterable<readonly [NameValueData, NameValueData]>,
  prefix: Buffer | undefined,
  stdin: Buffer | undefined,
): Buffer {
  // Hot path (once per request): measure everything first, then write each byte once into a
  // single buffer, instead of one Buffer per name, value, pair and record plus two concats.
  const list = Array.isArray(pairs)
    ? (pairs as ReadonlyArray<readonly [NameValueData, NameValueData]>)
    : [...pairs];
  return (
    encodeAsciiHead(requestId, list, prefix, stdin) ?? encodeAnyHead(requestId, list, prefix, stdin)
  );
}

/** Content bytes of each PARAMS record for pairs of these lengths (two per pair). */
function recordContentsOf(
  list: ReadonlyArray<readonly [NameValueData, NameValueData]>,
  lengths: (data: NameValueData) => number,
): number[] | null {
  const recordContents: number[] = [];
  let current = 0;
  for (const pair of list) {
    const nameLength = lengths(pair[0]);
    const valueLength = lengths(pair[1]);
    const pairLength =
      (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength;
    if (pairLength > MAX_RECORD_CONTENT) return null;
    if (current + pairLength > MAX_RECORD_CONTENT) {
      recordContents.push(current);
      current = 0;
    }
    current += pairLength;
  }
  if (current > 0) recordContents.push(current);
  return recordContents;
}

/** Total bytes of a request head with these PARAMS records (and STDIN when given). */
function headSize(
  prefix: Buffer | undefined,
  recordContents: readonly number[],
  stdin: Buffer | undefined,
): number {
  let total = (prefix?.length ?? 0) + FCGI_HEADER_LEN; // the empty PARAMS record ends the stream
  for (const content of recordContents) total += FCGI_HEADER_LEN + content + paddingFor(content);
  if (stdin !== undefined) total += streamDataSize(stdin.length) + FCGI_HEADER_LEN;
  return total;
}

/** The empty PARAMS record, then STDIN and its end when given; `offset` is where PARAMS ended. */
function writeTail(
  out: Buffer,
  offset: number,
  requestId: number,
  stdin: Buffer | undefined,
): void {
  writeHeader(out, offset, RecordType.FCGI_PARAMS, requestId, 0, 0);
  if (stdin === undefined) return;
  const end = writeStreamData(
    out,
    offset + FCGI_HEADER_LEN,
    RecordType.FCGI_STDIN,
    requestId,
    stdin,
  );
  writeHeader(out, end, RecordType.FCGI_STDIN, requestId, 0, 0);
}

/** A name-value length as the characters of its bytes (1 below 128, else 4, top bit set). */
function lengthChars(length: number): string {
  if (length < 128) return String.fromCharCode(length);
  return String.fromCharCode(
    ((length >>> 24) & 0x7f) | 0x80,
    (length >>> 16) & 0xff,
    (length >>> 8) & 0xff,
    length & 0xff,
  );
}

/** Content of the PARAMS records being built, shared: the encoders are synchronous. */
const recordTexts: string[] = [];
const recordSizes: number[] = [];

/**
 * The head when every name and value is an ASCII string (the usual request): lengths are
 * character counts and each record's content is one string whose characters are its bytes,
 * written by one latin1 write. Per-character loops are avoided on purpose: a request's strings
 * come in every V8 representation (flat, concatenated, sliced, internalized), and charCodeAt
 * over a mix of them costs several times a native copy. Null as soon as anything else shows up
 * (a Buffer, a non-ASCII character, a pair too long): encodeAnyHead then does it exactly.
 */
function encodeAsciiHead(
  requestId: number,
  list: ReadonlyArray<readonly [NameValueData, NameValueData]>,
  prefix: Buffer | undefined,
  stdin: Buffer | undefined,
): Buffer | null {
  let text = '';
  let size = 0;
  let recordStart = 0;
  let long = false;
  let ascii = true;
  for (let i = 0; i < list.length && ascii; i += 1) {
    const pair = list[i] as readonly [NameValueData, NameValueData];
    const name = pair[0];
    const value = pair[1];
    if (typeof name !== 'string' || typeof value !== 'string') {
      ascii = false;
      break;
    }
    const nameLength = name.length;
    const valueLength = value.length;
    const pairLength =
      (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength;
    if (pairLength > MAX_RECORD_CONTENT) {
      ascii = false;
      break;
    }
    if (size + pairLength > MAX_RECORD_CONTENT) {
      ascii = closeRecord(list, recordStart, i, text, size, long);
      text = '';
      size = 0;
      recordStart = i;
      long = false;
    }
    if (nameLength >= 128 || valueLength >= 128) long = true;
    text += lengthChars(nameLength);
    text += lengthChars(valueLength);
    text += name;
    text += value;
    size += pairLength;
  }
  if (ascii && size > 0) ascii = closeRecord(list, recordStart, list.length, text, size, long);
  if (!ascii) {
    recordTexts.length = 0;
    recordSizes.length = 0;
    return null;
  }
  const out = Buffer.allocUnsafe(headSize(prefix, recordSizes, stdin));
  let offset = prefix === undefined ? 0 : prefix.copy(out, 0);
  for (let r = 0; r < recordSizes.length; r += 1) {
    const content = recordSizes[r] as number;
    const padding = paddingFor(content);
    writeHeader(out, offset, RecordType.FCGI_PARAMS, requestId, content, padding);
    offset += FCGI_HEADER_LEN;
    offset += out.write(recordTexts[r] as string, offset, content, 'latin1');
    // allocUnsafe: padding bytes must not leak old heap memory to FPM.
    out.fill(0, offset, offset + padding);
    offset += padding;
  }
  recordTexts.length = 0;
  recordSizes.length = 0;
  writeTail(out, offset, requestId, stdin);
  return out;
}

/**
 * Keeps a record's content if every name and value in it (pairs `from` to `to`) is ASCII. Without
 * a long string the content's length characters are ASCII too, so one test over it decides;
 * with one, its 4-byte lengths are not, and the strings are tested one by one.
 */
function closeRecord(
  list: ReadonlyArray<readonly [NameValueData, NameValueData]>,
  from: number,
  to: number,
  text: string,
  size: number,
  long: boolean,
): boolean {
  if (!long) {
    if (NON_ASCII_RE.test(text)) return false;
  } else {
    for (let i = from; i < to; i += 1) {
      const pair = list[i] as readonly [string, string];
      if (NON_ASCII_RE.test(pair[0]) || NON_ASCII_RE.test(pair[1])) return false;
    }
  }
  recordTexts.push(text);
  recordSizes.push(size);
  return true;
}

const utf8Length = (data: NameValueData): number =>
  typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.length;

/** The head for any pairs (UTF-8 strings, Buffers); throws FCGI_PARAMS_TOO_LARGE. */
function encodeAnyHead(
  requestId: number,
  list: ReadonlyArray<readonly [NameValueData, NameValueData]>,
  prefix: Buffer | undefined,
  stdin: Buffer | undefined,
): Buffer {
  for (const [name, value] of list) {
    const nameLength = utf8Length(name);
    const valueLength = utf8Length(value);
    const pairLength =
      (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength;
    if (pairLength > MAX_RECORD_CONTENT) {
      const shownName = typeof name === 'string' ? name : name.toString('latin1');
      throw new SidecarError(
        ErrorCodes.FCGI_PARAMS_TOO_LARGE,
        `FastCGI param ${shownName.slice(0, 64)} is ${pairLength} bytes encoded; PHP-FPM accepts at most ${MAX_RECORD_CONTENT} per param`,
      );
    }
  }
  const recordContents = recordContentsOf(list, utf8Length) as number[];
  const out = Buffer.allocUnsafe(headSize(prefix, recordContents, stdin));
  let offset = prefix === undefined ? 0 : prefix.copy(out, 0);
  let index = 0;
  for (const content of recordContents) {
    const padding = paddingFor(content);
    writeHeader(out, offset, RecordType.FCGI_PARAMS, requestId, content, padding);
    offset += FCGI_HEADER_LEN;
    const end = offset + content;
    while (offset < end) {
      const [name, value] = list[index] as readonly [NameValueData, NameValueData];
      offset = writeNameValueLength(out, offset, utf8Length(name));
      offset = writeNameValueLength(out, offset, utf8Length(value));
      offset += typeof name === 'string' ? out.write(name, offset, 'utf8') : name.copy(out, offset);
      offset +=
        typeof value === 'string' ? out.write(value, offset, 'utf8') : value.copy(out, offset);
      index += 1;
    }
    out.fill(0, offset, offset + padding);
    offset += padding;
  }
  writeTail(out, offset, requestId, stdin);
  return out;
}
