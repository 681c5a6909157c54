/**
 * FastCGI record codec (spec §3.3): a pure, push-based decoder and the encoders this client needs.
 * Invariants: the decoder copes with a record split across chunks at any byte and never copies a
 * record that arrives whole (content is a subarray of the chunk); every encoded record satisfies
 * contentLength + paddingLength <= 65535, which php-src fcgi_read_request() demands. The request
 * head (BEGIN_REQUEST, PARAMS, STDIN) is encoded in request-encoder.ts.
 */
import { ErrorCodes, SidecarError } from '../errors.ts';
import {
  FCGI_ALIGNMENT,
  FCGI_HEADER_LEN,
  FCGI_VERSION_1,
  RecordType,
  type RecordTypeValue,
} from './constants.ts';

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

/** Padding that brings a record of this content length to a multiple of 8. */
export function paddingFor(contentLength: number): number {
  return (FCGI_ALIGNMENT - (contentLength % FCGI_ALIGNMENT)) % FCGI_ALIGNMENT;
}

/** Writes a record header at `offset` (the encoders of this folder share it). */
export function writeHeader(
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

/** Bytes of `length` bytes of stream data as records (no end record). */
export function streamDataSize(length: number): number {
  const fullRecords = Math.floor(length / MAX_RECORD_CONTENT);
  const rest = length % MAX_RECORD_CONTENT;
  return (
    fullRecords * (FCGI_HEADER_LEN + MAX_RECORD_CONTENT) +
    (rest > 0 ? FCGI_HEADER_LEN + rest + paddingFor(rest) : 0)
  );
}

/** Writes `data` as stream records at `offset` (padding zeroed); returns the offset after them. */
export function writeStreamData(
  out: Buffer,
  offset: number,
  type: number,
  requestId: number,
  data: Buffer,
): number {
  let at = offset;
  for (let start = 0; start < data.length; start += MAX_RECORD_CONTENT) {
    const length = Math.min(MAX_RECORD_CONTENT, data.length - start);
    const padding = paddingFor(length);
    writeHeader(out, at, type, requestId, length, padding);
    data.copy(out, at + FCGI_HEADER_LEN, start, start + length);
    at += FCGI_HEADER_LEN + length;
    out.fill(0, at, at + padding);
    at += padding;
  }
  return at;
}

/**
 * Encode stream data (STDIN, STDOUT, STDERR, ...) as records of at most MAX_RECORD_CONTENT
 * bytes, in one Buffer. Empty data gives an empty Buffer: an empty record would end the stream,
 * which is encodeStreamEnd's job.
 */
export function encodeStreamData(type: RecordTypeValue, requestId: number, data: Buffer): Buffer {
  if (data.length === 0) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(streamDataSize(data.length));
  writeStreamData(out, 0, type, requestId, data);
  return out;
}

/** The empty record that ends a stream. */
export function encodeStreamEnd(type: RecordTypeValue, requestId: number): Buffer {
  return encodeRecord(type, requestId);
}
