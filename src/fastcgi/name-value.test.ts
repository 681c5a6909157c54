// Name-value pair codec (FastCGI spec §3.4): 1-byte lengths below 128, 4-byte lengths with the
// top bit set from 128 on, across the 127/128/65535/65536 boundaries, plus truncation at every
// offset and PARAMS records decoded from chunks split at every offset.
import { describe, expect, it } from 'vitest';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { FCGI_REQUEST_ID, RecordType } from './constants.ts';
import { decodeNameValuePairs, encodeNameValuePair, encodeNameValuePairs } from './name-value.ts';
import { RecordDecoder, type FcgiRecord } from './record-codec.ts';
import { encodeParams } from './request-encoder.ts';

const sizes = [0, 1, 127, 128, 65535, 65536];

describe('encodeNameValuePair', () => {
  it.each(sizes.flatMap((n) => sizes.map((v) => [n, v] as const)))(
    'name %i bytes, value %i bytes round-trips with the right length sizes',
    (nameLength, valueLength) => {
      const name = 'N'.repeat(nameLength);
      const value = 'v'.repeat(valueLength);
      const encoded = encodeNameValuePair(name, value);
      const headerSize = (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4);
      expect(encoded.length).toBe(headerSize + nameLength + valueLength);
      expect(decodeNameValuePairs(encoded)).toEqual([[name, value]]);
    },
  );

  it.each([
    { length: 127, header: [0x7f] },
    { length: 128, header: [0x80, 0x00, 0x00, 0x80] },
    { length: 65535, header: [0x80, 0x00, 0xff, 0xff] },
    { length: 65536, header: [0x80, 0x01, 0x00, 0x00] },
  ])('length $length is encoded as $header', ({ length, header }) => {
    const encoded = encodeNameValuePair('x'.repeat(length), '');
    expect([...encoded.subarray(0, header.length)]).toEqual(header);
    // The empty value's length byte follows.
    expect(encoded[header.length]).toBe(0);
  });

  it('sends strings as UTF-8 and Buffers byte for byte', () => {
    const encoded = encodeNameValuePair('SCRIPT_FILENAME', '/srv/café.php');
    expect(encoded[1]).toBe(Buffer.byteLength('/srv/café.php'));
    expect(decodeNameValuePairs(encoded)).toEqual([['SCRIPT_FILENAME', '/srv/café.php']]);

    const raw = Buffer.from([0x61, 0xff, 0x00, 0xe9]);
    const binary = encodeNameValuePair('HTTP_X', raw);
    expect(binary.subarray(binary.length - 4)).toEqual(raw);
    expect(decodeNameValuePairs(binary, 'latin1')).toEqual([['HTTP_X', raw.toString('latin1')]]);
  });
});

describe('decodeNameValuePairs', () => {
  const pairs: Array<[string, string]> = [
    ['REQUEST_METHOD', 'GET'],
    ['EMPTY', ''],
    ['LONG', 'y'.repeat(300)],
    ['L'.repeat(200), 'short'],
  ];
  const block = encodeNameValuePairs(pairs);
  const boundaries = new Set<number>([0]);
  for (let i = 0, offset = 0; i < pairs.length; i += 1) {
    const [name, value] = pairs[i] as [string, string];
    offset += encodeNameValuePair(name, value).length;
    boundaries.add(offset);
  }

  it('decodes pairs in order', () => {
    expect(decodeNameValuePairs(block)).toEqual(pairs);
  });

  it('a prefix cut at every offset decodes whole pairs or throws FCGI_PROTOCOL', () => {
    for (let cut = 0; cut <= block.length; cut += 1) {
      const prefix = block.subarray(0, cut);
      if (boundaries.has(cut)) {
        expect(decodeNameValuePairs(prefix).length).toBe([...boundaries].indexOf(cut));
      } else {
        let caught: unknown;
        try {
          decodeNameValuePairs(prefix);
        } catch (err) {
          caught = err;
        }
        expect(caught, `cut at ${cut}`).toBeInstanceOf(SidecarError);
        expect((caught as SidecarError).code).toBe(ErrorCodes.FCGI_PROTOCOL);
      }
    }
  });
});

describe('PARAMS records', () => {
  it('split at every offset, every record decodes to whole pairs, in order', () => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i < 40; i += 1) pairs.push([`HTTP_X_${i}`, 'v'.repeat(i * 7)]);
    pairs.push(['BIG', 'b'.repeat(200)]);
    const encoded = encodeParams(FCGI_REQUEST_ID, pairs);
    for (let cut = 0; cut <= encoded.length; cut += 1) {
      const records: FcgiRecord[] = [];
      const decoder = new RecordDecoder((r) => records.push(r));
      decoder.push(encoded.subarray(0, cut));
      decoder.push(encoded.subarray(cut));
      const decoded = records
        .filter((r) => r.type === RecordType.FCGI_PARAMS && r.content.length > 0)
        .flatMap((r) => decodeNameValuePairs(r.content));
      expect(decoded).toEqual(pairs);
      expect(records.at(-1)?.content.length).toBe(0);
    }
  });
});
