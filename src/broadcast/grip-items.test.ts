/**
 * Pushpin's publish format: what @fanoutio/grip's Publisher sends (built with its own Item and
 * format classes, so a change of its wire format shows here), Pushpin's older top-level form,
 * and a table of malformed bodies, each answered with the message naming the item and field.
 * Also the strict base64 that content-bin and "base64:" keys go through.
 */
import { describe, expect, it } from 'vitest';
import { HttpResponseFormat, HttpStreamFormat, Item, WebSocketMessageFormat } from '@fanoutio/grip';
import { decodeBase64Strict } from './base64.ts';
import { parsePublishBody, type GripItem, type ItemLimits } from './grip-items.ts';

const LIMITS: ItemLimits = { maxItems: 3, channel: { maxChannels: 32, maxNameLength: 16 } };

function parse(doc: unknown): GripItem[] | string {
  return parsePublishBody(Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc)), LIMITS);
}

/** The body PublisherClient.publish posts for one item. */
function publisherBody(channel: string, item: Item): unknown {
  return { items: [{ ...item.export(), channel }] };
}

describe('parsePublishBody', () => {
  it('reads what the Publisher sends: content, content-bin, close, id and prev-id', () => {
    const bytes = Uint8Array.from([0, 255, 10, 13]);
    expect(
      parse(publisherBody('c', new Item(new HttpStreamFormat('data: hi\n\n'), '2', '1'))),
    ).toEqual([
      {
        channel: 'c',
        id: '2',
        prevId: '1',
        action: 'send',
        content: Buffer.from('data: hi\n\n'),
        noSeq: false,
        ignored: [],
      },
    ]);
    const [bin] = parse(publisherBody('c', new Item(new HttpStreamFormat(bytes)))) as GripItem[];
    expect(bin?.content).toEqual(Buffer.from(bytes));
    const [close] = parse(
      publisherBody('c', new Item(new HttpStreamFormat(null, true))),
    ) as GripItem[];
    expect(close).toMatchObject({ action: 'close', content: Buffer.alloc(0), id: undefined });
  });

  it('ignores http-response and ws-message beside http-stream, and says so', () => {
    const item = new Item([
      new HttpStreamFormat('s'),
      new HttpResponseFormat({ body: 'r' }),
      new WebSocketMessageFormat('w'),
    ]);
    const [parsed] = parse(publisherBody('c', item)) as GripItem[];
    expect(parsed?.content.toString()).toBe('s');
    expect(parsed?.ignored.sort()).toEqual(['http-response', 'ws-message']);
  });

  it("accepts Pushpin's older form (formats at the item's top level), no-seq, meta, size", () => {
    const [item] = parse({
      items: [
        {
          channel: 'c',
          'http-stream': { content: 'x' },
          'no-seq': true,
          meta: { a: 'b' },
          size: 3,
        },
      ],
    }) as GripItem[];
    expect(item).toMatchObject({ content: Buffer.from('x'), noSeq: true });
  });

  it('treats hint and refresh as nothing to do, and content-filters as ignored', () => {
    const items = parse({
      items: [
        { channel: 'c', formats: { 'http-stream': { action: 'hint' } } },
        { channel: 'c', formats: { 'http-stream': { action: 'refresh' } } },
        {
          channel: 'c',
          formats: { 'http-stream': { content: 'x', 'content-filters': ['skip-self'] } },
        },
      ],
    }) as GripItem[];
    expect(items.map((i) => i.action)).toEqual(['noop', 'noop', 'send']);
    expect(items[2]?.ignored).toEqual(['content-filters']);
  });

  it('prefers content-bin to content, as Pushpin', () => {
    const [item] = parse({
      items: [
        { channel: 'c', formats: { 'http-stream': { content: 'text', 'content-bin': 'Ymlu' } } },
      ],
    }) as GripItem[];
    expect(item?.content.toString()).toBe('bin');
  });

  it('accepts an empty item list (nothing is published)', () => {
    expect(parse({ items: [] })).toEqual([]);
  });

  const stream = { 'http-stream': { content: 'x' } };
  it.each<[string, unknown, string]>([
    ['not JSON', '{"items": [', 'Body is not valid JSON.'],
    ['not an object', '[1]', 'Invalid format: the body is not a JSON object.'],
    ['no items', {}, "Invalid format: object does not contain 'items'"],
    [
      'items not a list',
      { items: {} },
      "Invalid format: object contains 'items' with wrong type (an array is expected)",
    ],
    [
      'too many items',
      { items: [1, 2, 3, 4] },
      'Invalid format: 4 items; the limit is 3 (grip.max_items)',
    ],
    [
      'item not an object',
      { items: ['x'] },
      'Invalid format: items[0]: publish item object is not an object',
    ],
    [
      'no channel',
      { items: [{ formats: stream }] },
      "Invalid format: items[0]: publish item object does not contain 'channel'",
    ],
    [
      'channel not a string',
      { items: [{ channel: 1, formats: stream }] },
      "Invalid format: items[0]: publish item object contains 'channel' with wrong type",
    ],
    [
      'bad channel name',
      { items: [{ channel: 'a b', formats: stream }] },
      'Invalid format: items[0]: channel name "a b" has a character outside',
    ],
    [
      'channel name too long',
      { items: [{ channel: 'x'.repeat(17), formats: stream }] },
      'Invalid format: items[0]: channel name is 17 bytes; the limit is 16 (sse.max_channel_name_length)',
    ],
    [
      'id not a string',
      { items: [{ channel: 'c', id: 7, formats: stream }] },
      "Invalid format: items[0]: publish item object contains 'id' with wrong type",
    ],
    [
      'prev-id not a string',
      { items: [{ channel: 'c', 'prev-id': null, formats: stream }] },
      "Invalid format: items[0]: publish item object contains 'prev-id' with wrong type",
    ],
    [
      'formats not an object',
      { items: [{ channel: 'c', formats: [] }] },
      "Invalid format: items[0]: publish item object contains 'formats' with wrong type",
    ],
    [
      'no formats',
      { items: [{ channel: 'c', formats: {} }] },
      'Invalid format: items[0]: no formats specified',
    ],
    [
      'no formats, old form',
      { items: [{ channel: 'c' }] },
      'Invalid format: items[0]: no formats specified',
    ],
    [
      'an unknown format',
      { items: [{ channel: 'c', formats: { http_stream: {} } }] },
      "Invalid format: items[0]: 'formats' contains unknown format 'http_stream'",
    ],
    [
      'ws-message only',
      { items: [{ channel: 'c', formats: { 'ws-message': { content: 'x' } } }] },
      "Invalid format: items[0]: no 'http-stream' format: the sidecar carries HTTP streams only",
    ],
    [
      'http-response not an object',
      { items: [{ channel: 'c', formats: { ...stream, 'http-response': 'x' } }] },
      "Invalid format: items[0]: 'http-response' is not an object",
    ],
    [
      'http-stream not an object',
      { items: [{ channel: 'c', formats: { 'http-stream': 'x' } }] },
      "Invalid format: items[0]: 'http-stream' is not an object",
    ],
    [
      'no content',
      { items: [{ channel: 'c', formats: { 'http-stream': {} } }] },
      "Invalid format: items[0]: 'http-stream' does not contain 'content' or 'content-bin'",
    ],
    [
      'content not a string',
      { items: [{ channel: 'c', formats: { 'http-stream': { content: 1 } } }] },
      "Invalid format: items[0]: 'http-stream' contains 'content' with wrong type",
    ],
    [
      'content-bin not base64',
      { items: [{ channel: 'c', formats: { 'http-stream': { 'content-bin': 'a b' } } }] },
      "Invalid format: items[0]: 'http-stream' contains 'content-bin' that is not base64",
    ],
    [
      'an unknown action',
      { items: [{ channel: 'c', formats: { 'http-stream': { action: 'stop' } } }] },
      `Invalid format: items[0]: 'http-stream' contains 'action' with unknown value "stop"`,
    ],
    [
      'content-filters not a list',
      {
        items: [
          { channel: 'c', formats: { 'http-stream': { content: 'x', 'content-filters': 'a' } } },
        ],
      },
      "Invalid format: items[0]: 'http-stream' contains 'content-filters' with wrong type",
    ],
    [
      'no-seq not a boolean',
      { items: [{ channel: 'c', formats: stream, 'no-seq': 'yes' }] },
      "Invalid format: items[0]: publish item object contains 'no-seq' with wrong type",
    ],
    [
      'size negative',
      { items: [{ channel: 'c', formats: stream, size: -1 }] },
      "Invalid format: items[0]: publish item object contains 'size' with invalid value",
    ],
    [
      'meta value not a string',
      { items: [{ channel: 'c', formats: stream, meta: { a: 1 } }] },
      "Invalid format: items[0]: 'meta' contains 'a' with wrong type",
    ],
    [
      'the second item bad',
      { items: [{ channel: 'c', formats: stream }, { channel: 'c' }] },
      'Invalid format: items[1]: no formats specified',
    ],
  ])('refuses %s with a precise message', (_name, doc, message) => {
    const result = parse(doc);
    expect(typeof result).toBe('string');
    expect(result as string).toContain(message);
  });
});

describe('decodeBase64Strict', () => {
  it.each<[string, string | null]>([
    ['', ''],
    ['YQ==', 'a'],
    ['YQ', 'a'],
    ['YWI=', 'ab'],
    ['YWJj', 'abc'],
    ['Y', null],
    ['YQ=', null],
    ['Y Q==', null],
    ['YQ==\n', null],
    ['YR==', null], // non-zero trailing bits: not what a base64 encoder writes
    ['_-8=', null], // base64url is another alphabet
    ['====', null],
  ])('%j -> %j', (text, expected) => {
    expect(decodeBase64Strict(text)?.toString('utf8') ?? null).toBe(expected);
  });
});
