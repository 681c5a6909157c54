/**
 * Datagram codec v1: the shared vectors (test/vectors/datagram-v1.json, also run by the PHP shim),
 * boundary cases of the limits, and a seeded fuzz asserting that parseDatagram never throws and
 * always answers with a known reason. A fuzz failure prints its seed and case index.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import {
  DATAGRAM_REJECT_REASONS,
  encodeDatagram,
  parseDatagram,
  stripLegacySocket,
  type DatagramLimits,
  type DatagramRejectReason,
  type ParseResult,
} from './datagram-codec.ts';

interface VectorCall {
  channels: string | string[];
  data?: string;
  data_base64?: string;
  event?: string;
  id?: string;
  close?: boolean;
}
interface Vector {
  name: string;
  call: VectorCall | null;
  datagram_base64: string;
  expect:
    | {
        ok: true;
        message: {
          channels: string[];
          event?: string;
          id?: string;
          close: boolean;
          socket?: string;
          data_base64: string;
        };
      }
    | { ok: false; reason: DatagramRejectReason };
}

const vectors = JSON.parse(
  readFileSync(new URL('../../test/vectors/datagram-v1.json', import.meta.url), 'utf8'),
) as Vector[];

/** The limits the vector file is written for (docs/protocol.md). */
const limits: DatagramLimits = {
  maxDatagramBytes: 65534,
  maxChannelNameLength: 128,
  maxChannels: 32,
};

const REASONS = new Set<string>(DATAGRAM_REJECT_REASONS);

function callData(call: VectorCall): Buffer {
  return call.data_base64 !== undefined
    ? Buffer.from(call.data_base64, 'base64')
    : Buffer.from(call.data ?? '');
}

/** The parse result in the vector file's shape. */
function asExpectation(result: ParseResult): Vector['expect'] {
  if (!result.ok) return { ok: false, reason: result.reason };
  const { channels, event, id, close, socket, data } = result.message;
  return {
    ok: true,
    message: {
      channels,
      ...(event === undefined ? {} : { event }),
      ...(id === undefined ? {} : { id }),
      close,
      ...(socket === undefined ? {} : { socket }),
      data_base64: data.toString('base64'),
    },
  };
}

describe('shared vectors', () => {
  it('cover valid, invalid and every reason the format can produce', () => {
    expect(vectors.length).toBeGreaterThan(40);
    const reasons = new Set<string>(vectors.flatMap((v) => (v.expect.ok ? [] : [v.expect.reason])));
    // too_large is left out (a 64 KiB case would bloat the file): see 'limits' below.
    expect([...REASONS].filter((r) => !reasons.has(r))).toEqual(['too_large']);
  });

  it.each(vectors)('$name parses as expected', (vector) => {
    const result = parseDatagram(Buffer.from(vector.datagram_base64, 'base64'), limits);
    expect(asExpectation(result)).toEqual(vector.expect);
  });

  it.each(vectors.filter((v) => v.call !== null))(
    '$name: encodeDatagram(call) is the vector datagram',
    (vector) => {
      const call = vector.call as VectorCall;
      const encoded = encodeDatagram({ ...call, data: callData(call) });
      expect(encoded.toString('base64')).toBe(vector.datagram_base64);
    },
  );
});

describe('limits', () => {
  const small: DatagramLimits = { maxDatagramBytes: 100, maxChannelNameLength: 8, maxChannels: 2 };

  it('accepts a datagram of exactly maxDatagramBytes and rejects one byte more', () => {
    const header = Buffer.from('{"channel":"a"}\n');
    const fits = Buffer.concat([header, Buffer.alloc(100 - header.length, 0x78)]);
    expect(parseDatagram(fits, small).ok).toBe(true);
    const over = Buffer.concat([fits, Buffer.from('x')]);
    expect(parseDatagram(over, small)).toMatchObject({ ok: false, reason: 'too_large' });
  });

  it('counts distinct channels against maxChannels', () => {
    const dup = encodeDatagram({ channels: ['a', 'b', 'a', 'b'], data: '' });
    expect(parseDatagram(dup, small)).toMatchObject({
      ok: true,
      message: { channels: ['a', 'b'] },
    });
    const three = encodeDatagram({ channels: ['a', 'b', 'c'], data: '' });
    expect(parseDatagram(three, small)).toMatchObject({ reason: 'too_many_channels' });
  });

  it('applies maxChannelNameLength in bytes', () => {
    expect(parseDatagram(encodeDatagram({ channels: '12345678', data: '' }), small).ok).toBe(true);
    expect(parseDatagram(encodeDatagram({ channels: '123456789', data: '' }), small)).toMatchObject(
      { reason: 'bad_channel' },
    );
  });

  it('returns data as a view of the datagram, header untouched by the payload', () => {
    const datagram = encodeDatagram({ channels: 'a', data: '\n{"channel":"b"}\n' });
    const result = parseDatagram(datagram, limits);
    expect(result).toMatchObject({ ok: true, message: { channels: ['a'] } });
    if (result.ok) {
      expect(result.message.data.buffer).toBe(datagram.buffer);
      expect(result.message.data.toString()).toBe('\n{"channel":"b"}\n');
    }
  });

  it('ignores an inherited-looking __proto__ key (own keys only)', () => {
    const datagram = Buffer.from('{"__proto__":{"channel":"x"},"channel":"a"}\n');
    expect(parseDatagram(datagram, limits)).toMatchObject({
      ok: true,
      message: { channels: ['a'] },
    });
    const only = Buffer.from('{"__proto__":{"channel":"x"}}\n');
    expect(parseDatagram(only, limits)).toMatchObject({ reason: 'no_channel' });
  });

  it('rejects pathological nesting as bad_json without throwing', () => {
    const deep = Buffer.from(`${'['.repeat(60_000)}${']'.repeat(60_000)}\n`);
    expect(parseDatagram(deep, { ...limits, maxDatagramBytes: 200_000 })).toMatchObject({
      reason: 'bad_json',
    });
  });
});

describe('socket id (toOthers): a header key, never the data', () => {
  it('encodes it last in the header and parses it back; the data is untouched', () => {
    const datagram = encodeDatagram({ channels: ['a', 'b'], data: '{"x":1}', socket: '12.34' });
    expect(datagram.toString()).toBe('{"channels":["a","b"],"socket":"12.34"}\n{"x":1}');
    expect(parseDatagram(datagram, limits)).toMatchObject({
      ok: true,
      message: { socket: '12.34', data: Buffer.from('{"x":1}') },
    });
  });

  it.each([
    // [payload, what subscribers get, socket]: only the legacy broadcaster's exact shape is cut.
    ['{"user":"Bob","text":"hi","socket":"123.456"}', '{"user":"Bob","text":"hi"}', '123.456'],
    ['{"socket":"1.2"}', '{}', '1.2'],
    ['{"a":"x\\\\","socket":"1.2"}', '{"a":"x\\\\"}', '1.2'],
    ['{"a":{"socket":"1.2"}}', null, null], // nested: data
    ['{"a":"b,\\"socket\\":\\"1.2\\"}"}', null, null], // inside a string: data
    ['{"socket":"1.2","a":1}', null, null], // not the last member: left as is
    ['{"socket":"abc"}', null, null], // not a socket id
    ['{"socket":"1.2"', null, null], // not JSON
    ['x{"socket":"1.2"}', null, null], // not JSON
    ['[{"socket":"1.2"}]', null, null], // not an object
    [' {"socket":"1.2"}', null, null], // not the broadcaster's bytes
    ['{"socket": "1.2"}', null, null], // idem
    ['{"a":1,"socket":"1.2"} ', null, null], // idem
    ['{"socket":"9.9","socket":"1.2"}', '{"socket":"9.9"}', '1.2'], // JSON.parse keeps the last
  ])('legacy payload %s', (payload, kept, socket) => {
    const header = '{"channel":"chat"}\n';
    const result = parseDatagram(Buffer.from(header + payload), limits);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.message.data.toString()).toBe(kept ?? payload);
    expect(result.message.socket).toBe(socket ?? undefined);
    expect(stripLegacySocket(Buffer.from(payload))?.socket ?? null).toBe(socket);
  });

  it('a header socket wins: the payload is then never looked at', () => {
    const datagram = Buffer.from('{"channel":"c","socket":"5.6"}\n{"socket":"1.2"}');
    expect(parseDatagram(datagram, limits)).toMatchObject({
      ok: true,
      message: { socket: '5.6', data: Buffer.from('{"socket":"1.2"}') },
    });
  });

  it('rejects a socket that is not <digits>.<digits> as bad_socket', () => {
    for (const socket of ['', '1', '1.', '.1', '1.2.3', 'a.b', ` 1.2`, `${'9'.repeat(21)}.1`]) {
      const datagram = Buffer.from(`{"channel":"c","socket":${JSON.stringify(socket)}}\nx`);
      expect(parseDatagram(datagram, limits), socket).toMatchObject({ reason: 'bad_socket' });
    }
  });
});

function assertKnown(datagram: Buffer, where: string): void {
  let result: ParseResult;
  try {
    result = parseDatagram(datagram, limits);
  } catch (err) {
    throw new Error(`${where}: parseDatagram threw on ${datagram.toString('base64')}`, {
      cause: err,
    });
  }
  if (!result.ok && !REASONS.has(result.reason)) {
    throw new Error(`${where}: unknown reason ${result.reason}`);
  }
  if (result.ok && result.message.channels.length === 0) {
    throw new Error(`${where}: ok without channels`);
  }
}

describe('fuzz', () => {
  const seed = Number(process.env['ASKR_FUZZ_SEED'] ?? 0x5eed);
  // Bytes that steer random input into the interesting branches of the parser.
  const alphabet = Buffer.from('{}[]":,\n\r\0\\ 01vchanelsidcoetrufx\xff\xc3');

  it(`100,000 random buffers never throw (seed ${seed})`, () => {
    const random = prng(seed);
    for (let i = 0; i < 100_000; i++) {
      const length = Math.floor(random() * 64);
      const datagram = Buffer.alloc(length);
      const structured = random() < 0.5;
      for (let j = 0; j < length; j++) {
        datagram[j] = structured
          ? (alphabet[Math.floor(random() * alphabet.length)] ?? 0)
          : Math.floor(random() * 256);
      }
      assertKnown(datagram, `random case ${i}`);
    }
  });

  it(`mutated valid datagrams never throw (seed ${seed})`, () => {
    const random = prng(seed + 1);
    const valid = vectors
      .filter((v) => v.expect.ok)
      .map((v) => Buffer.from(v.datagram_base64, 'base64'));
    for (let i = 0; i < 20_000; i++) {
      const base = valid[i % valid.length] ?? Buffer.alloc(0);
      const datagram = Buffer.from(base);
      const flips = 1 + Math.floor(random() * 4);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(random() * Math.max(1, datagram.length));
        const op = random();
        if (op < 0.6) datagram[at] = Math.floor(random() * 256);
        else if (op < 0.8) datagram[at] = alphabet[Math.floor(random() * alphabet.length)] ?? 0;
        else datagram[at] = 0x0a;
      }
      const cut = random() < 0.2 ? Math.floor(random() * datagram.length) : datagram.length;
      assertKnown(datagram.subarray(0, cut), `mutation ${i} of vector ${i % valid.length}`);
    }
  });
  it(`20,000 random JSON headers reach every reason and never throw (seed ${seed})`, () => {
    const random = prng(seed + 2);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const chars = [
      'a',
      'Z',
      '9',
      '_',
      '-',
      '=',
      '.',
      ' ',
      ':',
      ',',
      '\r',
      '\n',
      '\0',
      'é',
      '\u2028',
    ];
    const randomString = (): string =>
      Array.from({ length: Math.floor(random() * 6) }, () => pick(chars)).join('');
    const randomValue = (depth: number): unknown => {
      const kind = Math.floor(random() * (depth > 1 ? 5 : 8));
      if (kind === 0) return randomString();
      if (kind === 1) return pick([0, 1, 2, -1, 1.5]);
      if (kind === 2) return pick([true, false, null]);
      if (kind === 3) return 'ok-channel';
      if (kind === 4) return 'i'.repeat(pick([1, 256, 257]));
      if (kind === 5)
        return Array.from({ length: pick([0, 1, 2, 40]) }, () => randomValue(depth + 1));
      if (kind === 6) return { k: randomValue(depth + 1) };
      return Array.from({ length: pick([1, 2, 33]) }, (_, j) => `c${j}`);
    };
    const keys = ['channel', 'channels', 'event', 'id', 'close', 'socket', 'v', 'x'];
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const header: Record<string, unknown> = {};
      for (const key of keys) if (random() < 0.5) header[key] = randomValue(0);
      const datagram = Buffer.from(`${JSON.stringify(header)}\n${randomString()}`);
      assertKnown(datagram, `header case ${i}`);
      const result = parseDatagram(datagram, limits);
      seen.add(result.ok ? 'ok' : result.reason);
    }
    for (const reason of [
      'ok',
      'bad_json',
      'bad_version',
      'no_channel',
      'bad_channel',
      'too_many_channels',
      'bad_event',
      'bad_id',
      'bad_socket',
    ]) {
      expect(seen).toContain(reason);
    }
  });
});
