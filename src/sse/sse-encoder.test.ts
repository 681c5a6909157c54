// SSE encoder: table tests of the wire bytes, rejection of line breaks in id/event (field
// injection), and a seeded fuzz loop that decodes with a spec-conformant parser (WHATWG HTML
// §9.2.6, "Interpreting an event stream") and compares with what was encoded.
import { describe, expect, it } from 'vitest';
import { prng } from '../../test/helpers/prng.ts';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { encodeFrame, PING_FRAME, type SseFrame } from './sse-encoder.ts';

interface ParsedEvent {
  type: string;
  /** Payload bytes (the parser works on bytes; UTF-8 decoding is not its concern here). */
  data: Buffer;
  lastEventId: string;
}

interface ParsedStream {
  events: ParsedEvent[];
  comments: string[];
  retryMs: number | undefined;
}

/**
 * The event-stream interpretation algorithm, on a latin1 view of the bytes so any byte survives.
 * Lines end at CRLF, LF or CR; an unterminated last line and an undispatched event are dropped.
 */
function parseStream(stream: Buffer): ParsedStream {
  const text = stream.toString('latin1');
  const out: ParsedStream = { events: [], comments: [], retryMs: undefined };
  const utf8 = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');
  let data = '';
  let type = '';
  let lastEventId = '';
  let idBuffer = '';
  let pos = 0;
  for (;;) {
    const match = /\r\n|\r|\n/.exec(text.slice(pos));
    if (match === null) break;
    const line = text.slice(pos, pos + match.index);
    pos += match.index + match[0].length;
    if (line === '') {
      lastEventId = idBuffer;
      if (data !== '') {
        out.events.push({
          type: type === '' ? 'message' : type,
          data: Buffer.from(data.endsWith('\n') ? data.slice(0, -1) : data, 'latin1'),
          lastEventId,
        });
      }
      data = '';
      type = '';
      continue;
    }
    if (line.startsWith(':')) {
      out.comments.push(utf8(line.slice(1).replace(/^ /, '')));
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') data += `${value}\n`;
    else if (field === 'event') type = utf8(value);
    else if (field === 'id' && !value.includes('\0')) idBuffer = utf8(value);
    else if (field === 'retry' && /^\d+$/.test(value)) out.retryMs = Number(value);
  }
  return out;
}

function expectEncodeError(frame: SseFrame): void {
  let caught: unknown;
  try {
    encodeFrame(frame);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SidecarError);
  expect((caught as SidecarError).code).toBe(ErrorCodes.SSE_ENCODE);
}

describe('encodeFrame wire bytes', () => {
  const table: [string, SseFrame, string][] = [
    ['single line', { data: 'hello' }, 'data: hello\n\n'],
    ['LF split', { data: 'a\nb' }, 'data: a\ndata: b\n\n'],
    ['CRLF split (one break)', { data: 'a\r\nb' }, 'data: a\ndata: b\n\n'],
    ['lone CR split', { data: 'a\rb' }, 'data: a\ndata: b\n\n'],
    ['CR CR is two breaks', { data: 'a\r\rb' }, 'data: a\ndata:\ndata: b\n\n'],
    ['LF CR is two breaks', { data: 'a\n\rb' }, 'data: a\ndata:\ndata: b\n\n'],
    ['trailing LF keeps an empty last line', { data: 'a\n' }, 'data: a\ndata:\n\n'],
    ['trailing CR', { data: 'a\r' }, 'data: a\ndata:\n\n'],
    ['only CRLF', { data: '\r\n' }, 'data:\ndata:\n\n'],
    ['empty data still yields one data line', { data: '' }, 'data:\n\n'],
    ['leading space survives the one stripped space', { data: ' x' }, 'data:  x\n\n'],
    ['colon in data', { data: 'k: v' }, 'data: k: v\n\n'],
    ['UTF-8 passes through', { data: 'héllo ✓ 😀' }, 'data: héllo ✓ 😀\n\n'],
    [
      'all fields, in order',
      { comment: 'c', retryMs: 3000, id: 'e-1@a', event: 'upd', data: 'x' },
      ': c\nretry: 3000\nid: e-1@a\nevent: upd\ndata: x\n\n',
    ],
    ['comment split on CR/LF', { comment: 'a\r\nb\rc\n' }, ': a\n: b\n: c\n:\n\n'],
    ['retry only', { retryMs: 0 }, 'retry: 0\n\n'],
    ['id only', { id: 'x-1' }, 'id: x-1\n\n'],
    ['event name with colon', { event: 'askr:lost', data: '{}' }, 'event: askr:lost\ndata: {}\n\n'],
    ['nothing at all', {}, '\n'],
  ];
  it.each(table)('%s', (_name, frame, wire) => {
    expect(encodeFrame(frame).toString('utf8')).toBe(wire);
  });

  it('passes binary bytes through and splits on the byte values 0x0d/0x0a', () => {
    const data = Buffer.from([0xff, 0x00, 0x0d, 0x80, 0x0d, 0x0a, 0xc3]);
    const expected = Buffer.concat([
      Buffer.from('data: '),
      Buffer.from([0xff, 0x00]),
      Buffer.from('\ndata: '),
      Buffer.from([0x80]),
      Buffer.from('\ndata: '),
      Buffer.from([0xc3]),
      Buffer.from('\n\n'),
    ]);
    expect(encodeFrame({ data }).equals(expected)).toBe(true);
    // The input is not modified.
    expect([...data]).toEqual([0xff, 0x00, 0x0d, 0x80, 0x0d, 0x0a, 0xc3]);
  });

  it('PING_FRAME is the ": ping" comment', () => {
    expect(PING_FRAME.toString()).toBe(': ping\n\n');
    expect(encodeFrame({ comment: 'ping' }).equals(PING_FRAME)).toBe(true);
  });
});

describe('encodeFrame rejects field injection', () => {
  it.each([
    ['LF in id', { id: 'a\nevent: evil', data: 'x' }],
    ['CR in id', { id: 'a\rb' }],
    ['CRLF in id', { id: 'a\r\nb' }],
    ['NUL in id', { id: 'a\0b' }],
    ['LF in event', { event: 'x\ndata: injected' }],
    ['CR in event', { event: 'x\r' }],
    ['negative retry', { retryMs: -1 }],
    ['fractional retry', { retryMs: 1.5 }],
    ['NaN retry', { retryMs: Number.NaN }],
  ] satisfies [string, SseFrame][])('%s', (_name, frame) => {
    expectEncodeError(frame);
  });

  it('allows NUL in event (parsers accept it) and CR/LF-free ids with any other byte', () => {
    expect(encodeFrame({ event: 'a\0b', id: 'é-1@x y', data: '' }).toString()).toBe(
      'id: é-1@x y\nevent: a\0b\ndata:\n\n',
    );
  });
});

describe('encodeFrame round-trips through a spec parser (fuzz)', () => {
  const pieces = [
    'a',
    'b',
    ' ',
    ':',
    '\r',
    '\n',
    '\r\n',
    'é',
    '✓',
    '😀',
    '\0',
    'data: ',
    'id:',
    '\t',
  ];
  const normalize = (s: string): string => s.replace(/\r\n|\r/g, '\n');

  it('random strings with ids and event names', () => {
    const random = prng(0x5eed);
    const pick = (from: readonly string[]): string =>
      from[Math.floor(random() * from.length)] ?? '';
    const frames: SseFrame[] = [];
    for (let i = 0; i < 3000; i++) {
      let data = '';
      const length = Math.floor(random() * 12);
      for (let j = 0; j < length; j++) data += pick(pieces);
      const frame: SseFrame = { data, id: `ep-${i}@ch.${i % 7}` };
      if (random() < 0.5) frame.event = `ev${pick(['', ':', '.', 'é', ' x'])}`;
      if (random() < 0.2) frame.comment = pick(pieces) + pick(pieces);
      frames.push(frame);
      const parsed = parseStream(encodeFrame(frame));
      expect(parsed.events).toHaveLength(1);
      const [event] = parsed.events;
      expect(event?.data.toString('utf8')).toBe(normalize(data));
      expect(event?.type).toBe(frame.event ?? 'message');
      expect(event?.lastEventId).toBe(frame.id);
    }
    // The same frames concatenated into one stream decode to the same sequence.
    const parsed = parseStream(Buffer.concat(frames.map((f) => encodeFrame(f))));
    expect(parsed.events.map((e) => e.data.toString('utf8'))).toEqual(
      frames.map((f) => normalize(String(f.data))),
    );
  });

  it('random binary payloads (CR/LF-heavy)', () => {
    const random = prng(42);
    for (let i = 0; i < 2000; i++) {
      const length = Math.floor(random() * 40);
      const bytes = Buffer.alloc(length);
      for (let j = 0; j < length; j++) {
        const r = random();
        bytes[j] = r < 0.2 ? 0x0d : r < 0.4 ? 0x0a : Math.floor(random() * 256);
      }
      const parsed = parseStream(encodeFrame({ data: bytes, retryMs: i }));
      expect(parsed.retryMs).toBe(i);
      expect(parsed.events).toHaveLength(1);
      const expected = Buffer.from(normalize(bytes.toString('latin1')), 'latin1');
      expect(parsed.events[0]?.data.equals(expected)).toBe(true);
    }
  });
});

describe('frames kept in the replay history pin nothing else (issue 13)', () => {
  it.each([
    ['a data frame', { id: 'e-1@x', event: 'e', data: Buffer.from('{"n":1}') }],
    ['a frame without data', { retryMs: 3000 }],
  ] as const)('%s owns its whole allocation, not a slice of the pool', (_name, frame) => {
    const out = encodeFrame(frame);
    expect(out.byteOffset).toBe(0);
    expect(out.buffer.byteLength).toBe(out.length);
  });
});
