/**
 * Pushpin's publish format (`POST /publish/` body), parsed strictly into what the hub carries.
 * Pure. Follows Pushpin's handler (src/handler/publishitem.cpp, publishformat.cpp): an item has a
 * string `channel`, optional `id` / `prev-id`, and `formats` (or, as Pushpin still accepts, the
 * formats at the item's top level). Every message names the item and the field, in Pushpin's
 * words where it has some ("Invalid format: …"). Any bad item refuses the whole request, as
 * Pushpin does: nothing of it is published.
 *
 *   {"items": [{"channel": "c", "id": "2", "prev-id": "1",
 *               "formats": {"http-stream": {"content": "…"} | {"content-bin": "<base64>"}
 *                                          | {"action": "close"},
 *                           "http-response": {…}, "ws-message": {…}}}]}
 */
import { channelListProblem, type ChannelLimits } from '../sse/channel-rules.ts';
import { decodeBase64Strict } from './base64.ts';

/** What the sidecar does not carry and ignores (the item is published without it). */
export const IGNORED_FORMATS = ['http-response', 'ws-message', 'content-filters'] as const;
export type IgnoredFormat = (typeof IGNORED_FORMATS)[number];

const FORMAT_NAMES = ['http-response', 'http-stream', 'ws-message'] as const;

/** One publish item, as the sidecar carries it. */
export interface GripItem {
  channel: string;
  /** Pushpin's `id`: duplicates are dropped, and it is the next item's expected `prev-id`. */
  id: string | undefined;
  prevId: string | undefined;
  /**
   * `send`: write `content`; `close`: end the channel's streams; `noop`: nothing to do here
   * (actions `hint` and `refresh` ask Pushpin to fetch a Grip-Link the sidecar does not follow).
   */
  action: 'send' | 'close' | 'noop';
  /** The http-stream content, as bytes (empty unless `send`). */
  content: Buffer;
  /** Pushpin's `no-seq`: sent at once, outside prev-id ordering. */
  noSeq: boolean;
  /** Formats and fields present that the sidecar ignores (for a rate-limited warning). */
  ignored: IgnoredFormat[];
}

export interface ItemLimits {
  /** grip.max_items */
  maxItems: number;
  /** The [sse] channel rules (names and their length). */
  channel: ChannelLimits;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class ItemError extends Error {}

/** An optional string field: undefined when absent (or "", which Pushpin's libraries never send). */
function optionalString(o: Json, key: string, where: string): string | undefined {
  if (!Object.hasOwn(o, key)) return undefined;
  const value = o[key];
  if (typeof value !== 'string') throw new ItemError(`${where} contains '${key}' with wrong type`);
  return value === '' ? undefined : value;
}

/** The body's items, or the reason (for a 400) they cannot be published. */
export function parsePublishBody(body: Buffer, limits: ItemLimits): GripItem[] | string {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return 'Body is not valid JSON.';
  }
  if (!isObject(doc)) return 'Invalid format: the body is not a JSON object.';
  if (!Object.hasOwn(doc, 'items')) return "Invalid format: object does not contain 'items'";
  const items = doc['items'];
  if (!Array.isArray(items)) {
    return "Invalid format: object contains 'items' with wrong type (an array is expected)";
  }
  if (items.length > limits.maxItems) {
    return `Invalid format: ${items.length} items; the limit is ${limits.maxItems} (grip.max_items)`;
  }
  const out: GripItem[] = [];
  for (const [index, raw] of items.entries()) {
    try {
      out.push(parseItem(raw, limits));
    } catch (err) {
      if (!(err instanceof ItemError)) throw err;
      return `Invalid format: items[${index}]: ${err.message}`;
    }
  }
  return out;
}

function parseItem(raw: unknown, limits: ItemLimits): GripItem {
  const pn = 'publish item object';
  if (!isObject(raw)) throw new ItemError(`${pn} is not an object`);
  if (!Object.hasOwn(raw, 'channel')) throw new ItemError(`${pn} does not contain 'channel'`);
  const channel = raw['channel'];
  if (typeof channel !== 'string') throw new ItemError(`${pn} contains 'channel' with wrong type`);
  const problem = channelListProblem([channel], { ...limits.channel, maxChannels: 1 });
  if (problem !== null) throw new ItemError(problem);
  const item: GripItem = {
    channel,
    id: optionalString(raw, 'id', pn),
    prevId: optionalString(raw, 'prev-id', pn),
    action: 'send',
    content: Buffer.alloc(0),
    noSeq: false,
    ignored: [],
  };
  checkExtras(raw, item, pn);
  let formats: Json;
  if (Object.hasOwn(raw, 'formats')) {
    const value = raw['formats'];
    if (!isObject(value)) throw new ItemError(`${pn} contains 'formats' with wrong type`);
    for (const name of Object.keys(value)) {
      if (!(FORMAT_NAMES as readonly string[]).includes(name)) {
        throw new ItemError(
          `'formats' contains unknown format '${name.slice(0, 32)}' (${FORMAT_NAMES.join(', ')})`,
        );
      }
    }
    formats = value;
  } else {
    // Pushpin's older form: the formats at the item's top level (other keys are the item's).
    formats = {};
    for (const name of FORMAT_NAMES) if (Object.hasOwn(raw, name)) formats[name] = raw[name];
  }
  if (Object.keys(formats).length === 0) throw new ItemError('no formats specified');
  for (const name of ['http-response', 'ws-message'] as const) {
    if (!Object.hasOwn(formats, name)) continue;
    if (!isObject(formats[name])) throw new ItemError(`'${name}' is not an object`);
    item.ignored.push(name);
  }
  if (!Object.hasOwn(formats, 'http-stream')) {
    throw new ItemError(
      "no 'http-stream' format: the sidecar carries HTTP streams only (it holds no http-response or ws-message subscriber)",
    );
  }
  parseHttpStream(formats['http-stream'], item);
  return item;
}

/** `meta`, `size` and `no-seq`: checked as Pushpin checks them; only no-seq changes anything. */
function checkExtras(raw: Json, item: GripItem, pn: string): void {
  if (Object.hasOwn(raw, 'meta')) {
    const meta = raw['meta'];
    if (!isObject(meta)) throw new ItemError(`${pn} contains 'meta' with wrong type`);
    for (const [key, value] of Object.entries(meta)) {
      if (typeof value !== 'string') {
        throw new ItemError(`'meta' contains '${key.slice(0, 32)}' with wrong type`);
      }
    }
  }
  if (Object.hasOwn(raw, 'size')) {
    const size = raw['size'];
    if (typeof size !== 'number' || !Number.isInteger(size)) {
      throw new ItemError(`${pn} contains 'size' with wrong type`);
    }
    if (size < 0) throw new ItemError(`${pn} contains 'size' with invalid value`);
  }
  if (Object.hasOwn(raw, 'no-seq')) {
    const noSeq = raw['no-seq'];
    if (typeof noSeq !== 'boolean') throw new ItemError(`${pn} contains 'no-seq' with wrong type`);
    item.noSeq = noSeq;
  }
}

function parseHttpStream(format: unknown, item: GripItem): void {
  const pn = "'http-stream'";
  if (!isObject(format)) throw new ItemError(`${pn} is not an object`);
  const action = optionalString(format, 'action', pn) ?? 'send';
  if (action === 'close') {
    item.action = 'close';
    return; // the content of a close is ignored (HttpStreamFormat sends "")
  }
  if (action === 'hint' || action === 'refresh') {
    item.action = 'noop';
    return;
  }
  if (action !== 'send') {
    throw new ItemError(
      `${pn} contains 'action' with unknown value "${action.slice(0, 32)}" (send, close, hint, refresh)`,
    );
  }
  if (Object.hasOwn(format, 'content-filters')) {
    const filters = format['content-filters'];
    if (!Array.isArray(filters))
      throw new ItemError(`${pn} contains 'content-filters' with wrong type`);
    if (!filters.every((f) => typeof f === 'string')) {
      throw new ItemError('content-filters contains element with wrong type');
    }
    if (filters.length > 0) item.ignored.push('content-filters');
  }
  // content-bin wins over content, as in Pushpin.
  if (Object.hasOwn(format, 'content-bin')) {
    const text = format['content-bin'];
    if (typeof text !== 'string')
      throw new ItemError(`${pn} contains 'content-bin' with wrong type`);
    const bytes = decodeBase64Strict(text);
    if (bytes === null) throw new ItemError(`${pn} contains 'content-bin' that is not base64`);
    item.content = bytes;
    return;
  }
  if (Object.hasOwn(format, 'content')) {
    const text = format['content'];
    if (typeof text !== 'string') throw new ItemError(`${pn} contains 'content' with wrong type`);
    item.content = Buffer.from(text, 'utf8');
    return;
  }
  throw new ItemError(`${pn} does not contain 'content' or 'content-bin'`);
}
