/**
 * FastCGI record codec (spec §3.3): a pure, push-based decoder and the encoders this client needs.
 * Invariants: the decoder copes with a record split across chunks at any byte and never copies a
 * record that arrives whole (content is a subarray of the chunk); every encoded record satisfies
 * contentLength + paddingLength <= 65535, which php-src fcgi_read_request() demands.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';
import {
  FCGI_ALIGNMENT,
  FCGI_HEADER_LEN,
  FCGI_VERSION_1,
  RecordType,
  type RecordTypeValue,
} from './constants.ts';
import { writeNameValueLength, type NameValueData } from './name-value.ts';

/**
 * Largest content we put in one record: 0xfff8 is the biggest multiple of 8 below 65535, so the
 * record needs no padding. php-src rejects len + padding > 0xffff, so 65535 bytes of content
 * (plus 1 byte of padding) would be refused; PHP's own writer uses 0xfff8 for the same reason.
 */
export const MAX_RECORD_CONTENT = 0xfff8;

/** One decoded record; padding is stripped. */
export interface FcgiRecord {
  readonly type: number;
  readonly requestId: number;
  /** The content bytes; may be a view into the chunk it arrived in. */
  readonly content: Buffer;
}

/** Body of FCGI_END_REQUEST. */
export interface EndRequestBody {
  readonly appStatus: number;
  readonly protocolStatus: number;
}

/**
 * Push-based decoder: feed it socket chunks with push(); it calls onRecord for every complete
 * record, in order. Throws SidecarError FCGI_PROTOCOL (502) on a version other than 1; after a
 * throw the stream is unusable (the caller destroys the connection).
 */
export class RecordDecoder {
  readonly #onRecord: (record: FcgiRecord) => void;
  readonly #header = Buffer.alloc(FCGI_HEADER_LEN);
  #headerFill = 0;
  /** -1 while reading a header; otherwise the content length of the record being read. */
  #contentLength = -1;
  #type = 0;
  #requestId = 0;
  #padding = 0;
  /** Content gathered so far when a record straddles chunks. */
  #partial: Buffer | null = null;
  #partialFill = 0;
  #paddingLeft = 0;

  constructor(onRecord: (record: FcgiRecord) => void) {
    this.#onRecord = onRecord;
  }

  /** Bytes held back waiting for the rest of a record (bounded by one record, < 65544). */
  get bufferedBytes(): number {
    return this.#headerFill + this.#partialFill;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#paddingLeft > 0) {
        const skip = Math.min(this.#paddingLeft, chunk.length - offset);
        this.#paddingLeft -= skip;
        offset += skip;
        continue;
      }
      if (this.#contentLength < 0) {
        const take = Math.min(FCGI_HEADER_LEN - this.#headerFill, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFill, offset, offset + take);
        this.#headerFill += take;
        offset += take;
        if (this.#headerFill === FCGI_HEADER_LEN) this.#startRecord();
        if (this.#contentLength === 0) this.#emit(Buffer.alloc(0));
        continue;
      }
      const available = chunk.length - offset;
      if (this.#partial === null && available >= this.#contentLength) {
        // Fast path: the whole content is in this chunk, hand out a view without copying.
        const content = chunk.subarray(offset, offset + this.#contentLength);
        offset += this.#contentLength;
        this.#emit(content);
        continue;
      }
      this.#partial ??= Buffer.allocUnsafe(this.#contentLength);
      const take = Math.min(this.#contentLength - this.#partialFill, available);
      chunk.copy(this.#partial, this.#partialFill, offset, offset + take);
      this.#partialFill += take;
      offset += take;
      if (this.#partialFill === this.#contentLength) this.#emit(this.#partial);
    }
  }

  #startRecord(): void {
    const header = this.#header;
    const version = header[0];
    if (version !== FCGI_VERSION_1) {
      throw new SidecarError(
        ErrorCodes.FCGI_PROTOCOL,
        `bad FastCGI record: version ${String(version)} (expected 1); is the address really FastCGI?`,
      );
    }
    this.#type = header.readUInt8(1);
    this.#requestId = header.readUInt16BE(2);
    this.#contentLength = header.readUInt16BE(4);
    this.#padding = header.readUInt8(6);
    this.#headerFill = 0;
  }

  #emit(content: Buffer): void {
    const record: FcgiRecord = { type: this.#type, requestId: this.#requestId, content };
    // Reset before the callback so that a callback that throws leaves a consistent state.
    this.#contentLength = -1;
    this.#partial = null;
    this.#partialFill = 0;
    this.#paddingLeft = this.#padding;
    this.#onRecord(record);
  }
}

function paddingFor(contentLength: number): number {
  return (FCGI_ALIGNMENT - (contentLength % FCGI_ALIGNMENT)) % FCGI_ALIGNMENT;
}

function writeHeader(
  out: Buffer,
  offset: number,
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength: number,
): void {
  out[offset] = FCGI_VERSION_1;
  out[offset + 1] = type;
  out.writeUInt16BE(requestId, offset + 2);
  out.writeUInt16BE(contentLength, offset + 4);
  out[offset + 6] = paddingLength;
  out[offset + 7] = 0;
}

/**
 * Encode one record, padded to a multiple of 8. Throws RangeError when content is longer than
 * MAX_RECORD_CONTENT (a programming error: streams go through encodeStreamData).
 */
export function encodeRecord(type: number, requestId: number, content?: Buffer): Buffer {
  const length = content?.length ?? 0;
  if (length > MAX_RECORD_CONTENT) {
    throw new RangeError(`FastCGI record content ${length} > ${MAX_RECORD_CONTENT} bytes`);
  }
  const padding = paddingFor(length);
  const out = Buffer.alloc(FCGI_HEADER_LEN + length + padding);
  writeHeader(out, 0, type, requestId, length, padding);
  content?.copy(out, FCGI_HEADER_LEN);
  return out;
}

/** FCGI_BEGIN_REQUEST with the given role and flags (spec §5.1). */
export function encodeBeginRequest(requestId: number, role: number, flags: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body[2] = flags;
  return encodeRecord(RecordType.FCGI_BEGIN_REQUEST, requestId, body);
}

/** FCGI_END_REQUEST (used by test responders; spec §5.5). */
export function encodeEndRequest(
  requestId: number,
  appStatus: number,
  protocolStatus: number,
): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body[4] = protocolStatus;
  return encodeRecord(RecordType.FCGI_END_REQUEST, requestId, body);
}

/** Parse an FCGI_END_REQUEST body; throws SidecarError FCGI_PROTOCOL (502) when it is short. */
export function decodeEndRequest(content: Buffer): EndRequestBody {
  if (content.length < 8) {
    throw new SidecarError(
      ErrorCodes.FCGI_PROTOCOL,
      `bad FastCGI END_REQUEST: ${content.length} bytes of content (expected 8)`,
    );
  }
  return { appStatus: content.readUInt32BE(0), protocolStatus: content.readUInt8(4) };
}

/**
 * Encode stream data (STDIN, STDOUT, STDERR, ...) as records of at most MAX_RECORD_CONTENT
 * bytes, in one Buffer. Empty data gives an empty Buffer: an empty record would end the stream,
 * which is encodeStreamEnd's job.
 */
export function encodeStreamData(type: RecordTypeValue, requestId: number, data: Buffer): Buffer {
  if (data.length === 0) return Buffer.alloc(0);
  const fullRecords = Math.floor(data.length / MAX_RECORD_CONTENT);
  const rest = data.length % MAX_RECORD_CONTENT;
  const size =
    fullRecords * (FCGI_HEADER_LEN + MAX_RECORD_CONTENT) +
    (rest > 0 ? FCGI_HEADER_LEN + rest + paddingFor(rest) : 0);
  const out = Buffer.alloc(size);
  let offset = 0;
  for (let start = 0; start < data.length; start += MAX_RECORD_CONTENT) {
    const length = Math.min(MAX_RECORD_CONTENT, data.length - start);
    const padding = paddingFor(length);
    writeHeader(out, offset, type, requestId, length, padding);
    data.copy(out, offset + FCGI_HEADER_LEN, start, start + length);
    offset += FCGI_HEADER_LEN + length + padding;
  }
  return out;
}

/** The empty record that ends a stream. */
export function encodeStreamEnd(type: RecordTypeValue, requestId: number): Buffer {
  return encodeRecord(type, requestId);
}

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
  // Hot path (once per request): measure everything first, then write each byte once into a
  // single buffer, instead of one Buffer per name, value, pair and record plus two concats.
  const list = Array.isArray(pairs)
    ? (pairs as ReadonlyArray<readonly [NameValueData, NameValueData]>)
    : [...pairs];
  const lengths = new Array<number>(list.length * 2);
  const recordContents: number[] = [];
  let current = 0;
  for (let i = 0; i < list.length; i += 1) {
    const [name, value] = list[i] as readonly [NameValueData, NameValueData];
    const nameLength = typeof name === 'string' ? Buffer.byteLength(name, 'utf8') : name.length;
    const valueLength = typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
    const pairLength =
      (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength;
    if (pairLength > MAX_RECORD_CONTENT) {
      const shownName = typeof name === 'string' ? name : name.toString('latin1');
      throw new SidecarError(
        ErrorCodes.FCGI_PARAMS_TOO_LARGE,
        `FastCGI param ${shownName.slice(0, 64)} is ${pairLength} bytes encoded; PHP-FPM accepts at most ${MAX_RECORD_CONTENT} per param`,
      );
    }
    if (current + pairLength > MAX_RECORD_CONTENT) {
      recordContents.push(current);
      current = 0;
    }
    current += pairLength;
    lengths[2 * i] = nameLength;
    lengths[2 * i + 1] = valueLength;
  }
  if (current > 0) recordContents.push(current);

  let total = (prefix?.length ?? 0) + FCGI_HEADER_LEN; // the empty PARAMS record ends the stream
  for (const content of recordContents) total += FCGI_HEADER_LEN + content + paddingFor(content);
  const out = Buffer.allocUnsafe(total);
  let offset = prefix === undefined ? 0 : prefix.copy(out, 0);
  let index = 0;
  for (const content of recordContents) {
    const padding = paddingFor(content);
    writeHeader(out, offset, RecordType.FCGI_PARAMS, requestId, content, padding);
    offset += FCGI_HEADER_LEN;
    const end = offset + content;
    while (offset < end) {
      const [name, value] = list[index] as readonly [NameValueData, NameValueData];
      const nameLength = lengths[2 * index] ?? 0;
      const valueLength = lengths[2 * index + 1] ?? 0;
      offset = writeNameValueLength(out, offset, nameLength);
      offset = writeNameValueLength(out, offset, valueLength);
      offset +=
        typeof name === 'string'
          ? out.write(name, offset, nameLength, 'utf8')
          : name.copy(out, offset);
      offset +=
        typeof value === 'string'
          ? out.write(value, offset, valueLength, 'utf8')
          : value.copy(out, offset);
      index += 1;
    }
    // allocUnsafe: padding bytes must not leak old heap memory to FPM.
    out.fill(0, offset, offset + padding);
    offset += padding;
  }
  writeHeader(out, offset, RecordType.FCGI_PARAMS, requestId, 0, 0);
  return out;
}
