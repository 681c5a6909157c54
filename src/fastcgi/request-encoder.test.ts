// The request head encoder: whole pairs per PARAMS record within PHP's limit, the bytes of
// encodeNameValuePair for every pair whichever path encodes them (all-ASCII or exact; fuzzed
// with non-ASCII characters anywhere, long values and several records), zero padding, and a
// whole request with its body in one buffer. A recurrence looks like a shifted byte in $_SERVER.
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { BeginRequestFlags, RecordType, Role } from './constants.ts';
import { decodeNameValuePairs, encodeNameValuePair } from './name-value.ts';
import {
  encodeBeginRequest,
  encodeStreamData,
  encodeStreamEnd,
  MAX_RECORD_CONTENT,
  RecordDecoder,
  type FcgiRecord,
} from './record-codec.ts';
import { encodeParams, encodeRequest } from './request-encoder.ts';

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

describe('encodeParams', () => {
  it('params: whole pairs per record, each record within 65528, empty record last', () => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i < 30; i += 1) pairs.push([`P${i}`, 'x'.repeat(5000 + i)]);
    // 1 + 4 length bytes + 3 name bytes: exactly one full record.
    pairs.push(['MAX', 'm'.repeat(MAX_RECORD_CONTENT - 8)]);
    const records = decodeAll([encodeParams(1, pairs)]);
    expect(records.length).toBeGreaterThan(3);
    expect(records.at(-1)?.content.length).toBe(0);
    const body = records.slice(0, -1);
    for (const r of body) expect(r.content.length).toBeLessThanOrEqual(MAX_RECORD_CONTENT);
    expect(body.flatMap((r) => decodeNameValuePairs(r.content))).toEqual(pairs);
  });

  it('params: one pair too long for a PHP record is refused with FCGI_PARAMS_TOO_LARGE', () => {
    let caught: unknown;
    try {
      encodeParams(1, [['HTTP_COOKIE', 'c'.repeat(MAX_RECORD_CONTENT)]]);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SidecarError);
    expect((caught as SidecarError).code).toBe(ErrorCodes.FCGI_PARAMS_TOO_LARGE);
    expect((caught as SidecarError).message).toContain('HTTP_COOKIE');
  });

  it('params: every pair has the bytes of encodeNameValuePair (UTF-8, Buffers, 127/128 lengths)', () => {
    // Regression guard for the single-buffer encoder: it measures with Buffer.byteLength and
    // writes in place, so a wrong length (multi-byte UTF-8, a lone surrogate) would shift bytes.
    const pairs: Array<[string | Buffer, string | Buffer]> = [
      ['SCRIPT_FILENAME', '/srv/café/index.php'],
      ['N'.repeat(127), 'v'.repeat(128)],
      ['N'.repeat(128), 'v'.repeat(127)],
      [Buffer.from('HTTP_X_BIN'), Buffer.from([0, 0xff, 0x80, 0x0a])],
      ['EMOJI', '😀 \ud800 lone surrogate'],
      ['EMPTY', ''],
    ];
    for (let i = 0; i < 20; i += 1) pairs.push([`P${i}`, 'x'.repeat(3000 * i)]);
    const records = decodeAll([encodeParams(1, pairs)]);
    const content = Buffer.concat(records.slice(0, -1).map((r) => r.content));
    expect(content.equals(Buffer.concat(pairs.map(([n, v]) => encodeNameValuePair(n, v))))).toBe(
      true,
    );
  });

  it('params with a prefix: the prefix bytes first, then the same records', () => {
    const begin = encodeBeginRequest(1, Role.FCGI_RESPONDER, BeginRequestFlags.FCGI_KEEP_CONN);
    const pairs: Array<[string, string]> = [
      ['REQUEST_METHOD', 'GET'],
      ['QUERY_STRING', 'a=1'],
    ];
    const withPrefix = encodeParams(1, pairs, begin);
    expect(withPrefix.equals(Buffer.concat([begin, encodeParams(1, pairs)]))).toBe(true);
    // Padding bytes are zero, not leftovers of an unsafe allocation.
    const records = decodeAll([withPrefix]);
    expect(records.map((r) => r.type)).toEqual([
      RecordType.FCGI_BEGIN_REQUEST,
      RecordType.FCGI_PARAMS,
      RecordType.FCGI_PARAMS,
    ]);
    const paramsLength = withPrefix.readUInt16BE(begin.length + 4);
    const padding = withPrefix.readUInt8(begin.length + 6);
    const padStart = begin.length + 8 + paramsLength;
    expect([...withPrefix.subarray(padStart, padStart + padding)].every((b) => b === 0)).toBe(true);
  });
});

describe('encodeRequest: a whole request in one buffer', () => {
  const begin = encodeBeginRequest(1, Role.FCGI_RESPONDER, BeginRequestFlags.FCGI_KEEP_CONN);

  it.each([
    ['no body', null],
    ['a small body', Buffer.from('a=1&b=2')],
    ['a body of several records', pattern(MAX_RECORD_CONTENT * 2 + 13)],
  ])('%s: the same bytes as BEGIN + PARAMS + STDIN records + the empty STDIN', (_name, body) => {
    const pairs: Array<[string, string]> = [
      ['REQUEST_METHOD', 'POST'],
      ['CONTENT_LENGTH', String(body?.length ?? 0)],
    ];
    const expected = Buffer.concat([
      encodeParams(1, pairs, begin),
      body === null ? Buffer.alloc(0) : encodeStreamData(RecordType.FCGI_STDIN, 1, body),
      encodeStreamEnd(RecordType.FCGI_STDIN, 1),
    ]);
    expect(encodeRequest(1, begin, pairs, body).equals(expected)).toBe(true);
  });

  it('ASCII and non-ASCII pairs, short and long, give the bytes of encodeNameValuePair', () => {
    // The ASCII fast path writes characters as bytes and must give up on any character outside
    // ASCII, wherever it is (a short string, a long one whose length takes 4 bytes, the very last
    // pair, a later record), leaving the exact encoder to start over.
    const random = prng(13);
    const chars = ['a', 'Z', '/', ' ', '\0', '~', 'é', 'ü', '😀', '\u00ff', '\u0080'];
    for (let round = 0; round < 300; round += 1) {
      const pairs: Array<[string, string]> = [];
      const count = 1 + Math.floor(random() * 30);
      for (let i = 0; i < count; i += 1) {
        // Now and then a long value, so that some requests need several PARAMS records.
        const length = [0, 1, 63, 64, 65, 127, 128, 300, 20_000][Math.floor(random() * 9)] ?? 0;
        const ascii = random() < 0.9;
        let unit = '';
        for (let c = 0; c < Math.min(length, 300); c += 1) {
          unit += ascii
            ? String.fromCharCode(32 + Math.floor(random() * 95))
            : (chars[Math.floor(random() * chars.length)] ?? 'x');
        }
        pairs.push([`P_${i}`, unit.repeat(Math.ceil(length / 300) || 1).slice(0, length)]);
      }
      const records = decodeAll([encodeRequest(1, begin, pairs, null)]);
      expect(records.map((r) => r.type).slice(-2)).toEqual([
        RecordType.FCGI_PARAMS,
        RecordType.FCGI_STDIN,
      ]);
      const content = Buffer.concat(
        records.filter((r) => r.type === RecordType.FCGI_PARAMS).map((r) => r.content),
      );
      const expected = Buffer.concat(pairs.map(([n, v]) => encodeNameValuePair(n, v)));
      expect(content.equals(expected), `round ${round}`).toBe(true);
    }
  });
});
