/**
 * FastCGI name-value pairs (spec §3.4), the body of FCGI_PARAMS and FCGI_GET_VALUES records.
 * A length below 128 takes 1 byte; anything longer takes 4 bytes, big-endian, top bit set.
 * Strings are sent as UTF-8; a Buffer is sent byte for byte. Pure functions, no I/O.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';

/** Largest length the 4-byte form can carry (31 bits). */
const MAX_NV_LENGTH = 0x7fffffff;

/** A name or value: a string is encoded as UTF-8, a Buffer is taken as raw bytes. */
export type NameValueData = string | Buffer;

function toBytes(data: NameValueData): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

function lengthSize(length: number): number {
  return length < 128 ? 1 : 4;
}

/**
 * Writes a name or value length at `offset` (1 byte below 128, else 4 bytes with the top bit set)
 * and returns the offset after it. `length` must be <= 2^31-1.
 */
export function writeNameValueLength(out: Buffer, offset: number, length: number): number {
  if (length < 128) {
    out[offset] = length;
    return offset + 1;
  }
  // `>>> 0` keeps the value unsigned once bit 31 is set.
  out.writeUInt32BE((length | 0x80000000) >>> 0, offset);
  return offset + 4;
}

/**
 * Encode one pair. Throws SidecarError FCGI_PROTOCOL when a length exceeds the 31-bit limit.
 */
export function encodeNameValuePair(name: NameValueData, value: NameValueData): Buffer {
  const nameBytes = toBytes(name);
  const valueBytes = toBytes(value);
  if (nameBytes.length > MAX_NV_LENGTH || valueBytes.length > MAX_NV_LENGTH) {
    throw new SidecarError(
      ErrorCodes.FCGI_PROTOCOL,
      'FastCGI name-value pair longer than 2^31-1 bytes',
    );
  }
  const size =
    lengthSize(nameBytes.length) +
    lengthSize(valueBytes.length) +
    nameBytes.length +
    valueBytes.length;
  const out = Buffer.allocUnsafe(size);
  let offset = writeNameValueLength(out, 0, nameBytes.length);
  offset = writeNameValueLength(out, offset, valueBytes.length);
  offset += nameBytes.copy(out, offset);
  valueBytes.copy(out, offset);
  return out;
}

/** Encode pairs in order, concatenated. */
export function encodeNameValuePairs(
  pairs: Iterable<readonly [NameValueData, NameValueData]>,
): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) parts.push(encodeNameValuePair(name, value));
  return Buffer.concat(parts);
}

function readLength(buf: Buffer, offset: number): [length: number, next: number] {
  const first = buf[offset];
  if (first === undefined) throw truncated();
  if (first < 128) return [first, offset + 1];
  if (offset + 4 > buf.length) throw truncated();
  return [buf.readUInt32BE(offset) & 0x7fffffff, offset + 4];
}

function truncated(): SidecarError {
  return new SidecarError(ErrorCodes.FCGI_PROTOCOL, 'truncated FastCGI name-value pair');
}

/**
 * Decode a complete name-value block (one record's content: FPM requires pairs not to straddle
 * records). Throws SidecarError FCGI_PROTOCOL (502) when a pair is truncated.
 */
export function decodeNameValuePairs(
  buf: Buffer,
  encoding: BufferEncoding = 'utf8',
): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  let offset = 0;
  while (offset < buf.length) {
    const [nameLength, afterName] = readLength(buf, offset);
    const [valueLength, start] = readLength(buf, afterName);
    const end = start + nameLength + valueLength;
    if (end > buf.length) throw truncated();
    pairs.push([
      buf.toString(encoding, start, start + nameLength),
      buf.toString(encoding, start + nameLength, end),
    ]);
    offset = end;
  }
  return pairs;
}
