// Record codec: exact header bytes, padding to 8, records never over PHP's 0xffff limit
// (content + padding), a decoder fed records split at every offset and at random offsets, and
// rejection of a non-FastCGI peer (bad version byte).
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { BeginRequestFlags, FCGI_REQUEST_ID, RecordType, Role } from './constants.ts';
import {
  decodeEndRequest,
  encodeBeginRequest,
  encodeEndRequest,
  encodeRecord,
  encodeStreamData,
  encodeStreamEnd,
  MAX_RECORD_CONTENT,
  RecordDecoder,
  type FcgiRecord,
} from './record-codec.ts';

/** A record as any peer may write it: arbitrary padding, content up to 65535. */
function rawRecord(type: number, requestId: number, content: Buffer, padding = 0): Buffer {
  const out = Buffer.alloc(8 + content.length + padding, 0xee);
  out.writeUInt8(1, 0);
  out.writeUInt8(type, 1);
  out.writeUInt16BE(requestId, 2);
  out.writeUInt16BE(content.length, 4);
  out.writeUInt8(padding, 6);
  out.writeUInt8(0, 7);
  content.copy(out, 8);
  return out;
}

function decodeAll(chunks: Buffer[]): FcgiRecord[] {
  const records: FcgiRecord[] = [];
  const decoder = new RecordDecoder((r) => records.push({ ...r, content: Buffer.from(r.content) }));
  for (const chunk of chunks) decoder.push(chunk);
  expect(decoder.bufferedBytes).toBe(0);
  return records;
}

function pattern(length: number, seed = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 1) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

describe('encoders', () => {
  it('BEGIN_REQUEST has the exact bytes of spec §5.1', () => {
    const bytes = encodeBeginRequest(1, Role.FCGI_RESPONDER, BeginRequestFlags.FCGI_KEEP_CONN);
    expect([...bytes]).toEqual([1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  });

  it.each([0, 1, 7, 8, 9, 127, 128, 65527, MAX_RECORD_CONTENT])(
    'a record of %i content bytes is padded to a multiple of 8',
    (length) => {
      const content = pattern(length);
      const record = encodeRecord(RecordType.FCGI_STDOUT, 1, content);
      expect(record.length % 8).toBe(0);
      expect(record.readUInt16BE(4)).toBe(length);
      expect(record.readUInt16BE(4) + record.readUInt8(6)).toBeLessThanOrEqual(0xffff);
      expect(record.length).toBe(8 + length + record.readUInt8(6));
      expect(decodeAll([record])[0]?.content).toEqual(content);
    },
  );

  it('refuses a single record over MAX_RECORD_CONTENT', () => {
    expect(() => encodeRecord(RecordType.FCGI_STDIN, 1, Buffer.alloc(65535))).toThrow(RangeError);
  });

  it.each([1, 127, 128, 65528, 65529, 65535, 65536, 200_000])(
    'stream data of %i bytes: records <= 65528 content, padded, reassembled exactly',
    (length) => {
      const data = pattern(length, 3);
      const encoded = encodeStreamData(RecordType.FCGI_STDIN, FCGI_REQUEST_ID, data);
      const records = decodeAll([encoded]);
      expect(records.length).toBe(Math.ceil(length / MAX_RECORD_CONTENT));
      for (const record of records) {
        expect(record.type).toBe(RecordType.FCGI_STDIN);
        expect(record.requestId).toBe(1);
        expect(record.content.length).toBeGreaterThan(0);
        expect(record.content.length).toBeLessThanOrEqual(MAX_RECORD_CONTENT);
      }
      expect(Buffer.concat(records.map((r) => r.content))).toEqual(data);
      expect(encoded.length % 8).toBe(0);
    },
  );

  it('empty stream data encodes to nothing; the stream end is one empty record', () => {
    expect(encodeStreamData(RecordType.FCGI_STDIN, 1, Buffer.alloc(0)).length).toBe(0);
    expect([...encodeStreamEnd(RecordType.FCGI_STDIN, 1)]).toEqual([1, 5, 0, 1, 0, 0, 0, 0]);
  });

  it('END_REQUEST round-trips; a short one is a protocol error', () => {
    const [record] = decodeAll([encodeEndRequest(1, 0xfffffffe, 2)]);
    expect(record?.type).toBe(RecordType.FCGI_END_REQUEST);
    expect(decodeEndRequest(record?.content ?? Buffer.alloc(0))).toEqual({
      appStatus: 0xfffffffe,
      protocolStatus: 2,
    });
    expect(() => decodeEndRequest(Buffer.alloc(4))).toThrow(SidecarError);
  });
});

describe('RecordDecoder', () => {
  const small = Buffer.concat([
    rawRecord(RecordType.FCGI_STDOUT, 1, Buffer.from('Status: 200\r\n\r\nhi')),
    rawRecord(RecordType.FCGI_STDERR, 1, Buffer.from('PHP Warning'), 5),
    rawRecord(RecordType.FCGI_GET_VALUES_RESULT, 0, Buffer.alloc(0), 255),
    rawRecord(RecordType.FCGI_STDOUT, 1, Buffer.alloc(0)),
    rawRecord(RecordType.FCGI_UNKNOWN_TYPE, 0, Buffer.from([99, 0, 0, 0, 0, 0, 0, 0])),
    encodeEndRequest(1, 0, 0),
  ]);
  const expected = decodeAll([small]);

  it('decodes a sequence in one chunk', () => {
    expect(expected.map((r) => r.type)).toEqual([6, 7, 10, 6, 11, 3]);
    expect(expected[0]?.content.toString()).toBe('Status: 200\r\n\r\nhi');
    expect(expected[3]?.content.length).toBe(0);
  });

  it('gives the same records when split in two at every offset', () => {
    for (let cut = 0; cut <= small.length; cut += 1) {
      expect(decodeAll([small.subarray(0, cut), small.subarray(cut)]), `cut ${cut}`).toEqual(
        expected,
      );
    }
  });

  it('gives the same records when split in three at every pair of offsets', () => {
    for (let a = 0; a <= small.length; a += 1) {
      for (let b = a; b <= small.length; b += 3) {
        const chunks = [small.subarray(0, a), small.subarray(a, b), small.subarray(b)];
        expect(decodeAll(chunks)).toEqual(expected);
      }
    }
  });

  it('gives the same records fed one byte at a time', () => {
    const bytes = [...small].map((b) => Buffer.from([b]));
    expect(decodeAll(bytes)).toEqual(expected);
  });

  it('accepts the largest record a peer may send (65535 content + 255 padding)', () => {
    const content = pattern(65535, 9);
    const stream = Buffer.concat([
      rawRecord(RecordType.FCGI_STDOUT, 1, content, 255),
      encodeEndRequest(1, 0, 0),
    ]);
    for (const cut of [1, 7, 8, 9, 4096, 65535, 65543, 65544, 65790, stream.length - 1]) {
      const records = decodeAll([stream.subarray(0, cut), stream.subarray(cut)]);
      expect(records[0]?.content).toEqual(content);
      expect(records[1]?.type).toBe(RecordType.FCGI_END_REQUEST);
    }
  });

  it('hands out a view of the chunk, without copying, when a record arrives whole', () => {
    const chunk = rawRecord(RecordType.FCGI_STDOUT, 1, Buffer.from('abcdef'));
    let content: Buffer | undefined;
    new RecordDecoder((r) => (content = r.content)).push(chunk);
    expect(content?.buffer).toBe(chunk.buffer);
  });

  it('fuzz: random records, random splits, same result', () => {
    const random = prng(12345);
    for (let round = 0; round < 300; round += 1) {
      const parts: Buffer[] = [];
      const want: Array<{ type: number; requestId: number; content: Buffer }> = [];
      const count = 1 + Math.floor(random() * 8);
      for (let i = 0; i < count; i += 1) {
        const big = random() < 0.1;
        const length = Math.floor(random() * (big ? 65536 : 300));
        const content = pattern(length, round + i);
        const type = 1 + Math.floor(random() * 11);
        const requestId = Math.floor(random() * 3);
        parts.push(rawRecord(type, requestId, content, Math.floor(random() * 256)));
        want.push({ type, requestId, content });
      }
      const stream = Buffer.concat(parts);
      const chunks: Buffer[] = [];
      for (let offset = 0; offset < stream.length;) {
        const size = 1 + Math.floor(random() * (random() < 0.5 ? 16 : 70_000));
        chunks.push(stream.subarray(offset, offset + size));
        offset += size;
      }
      expect(decodeAll(chunks), `round ${round}`).toEqual(want);
    }
  });

  it('rejects a peer that does not speak FastCGI (bad version) with FCGI_PROTOCOL', () => {
    const decoder = new RecordDecoder(() => undefined);
    let caught: unknown;
    try {
      decoder.push(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SidecarError);
    expect((caught as SidecarError).code).toBe(ErrorCodes.FCGI_PROTOCOL);
  });
});
