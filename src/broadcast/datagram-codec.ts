/**
 * Datagram protocol v1 (docs/protocol.md): one line of JSON (an object), '\n', then the raw
 * payload bytes. Pure and synchronous. Invariants: `parseDatagram` never throws, whatever the
 * bytes; every rejection carries one reason from a closed set (so it can label a metric) and a
 * detail for the log; the publisher's socket id travels in the header, never in the data
 * subscribers get (a legacy payload that carries it is cut, see stripLegacySocket).
 * `encodeDatagram` is the canonical encoder the PHP shim matches byte for byte.
 */
import { channelNameProblem, isSocketId, SOCKET_ID_FORMAT } from '../sse/channel-rules.ts';

/** A publish as the hub receives it. `data` is a view into the datagram buffer (no copy), except
 * for a legacy payload whose socket member was cut (stripLegacySocket). */
export interface DatagramMessage {
  /** Deduplicated, in first-seen order; never empty. */
  channels: string[];
  event?: string;
  id?: string;
  /** End the channels' streams after delivering this event (Pushpin's close action). */
  close: boolean;
  /** The publisher's socket id (Laravel's toOthers()): that stream does not get the event. */
  socket?: string;
  data: Buffer;
}

/** Every reason parseDatagram can give (metrics label values come from this list). */
export const DATAGRAM_REJECT_REASONS = [
  'empty',
  'too_large',
  'no_header_line',
  'bad_json',
  'bad_version',
  'no_channel',
  'bad_channel',
  'too_many_channels',
  'bad_event',
  'bad_id',
  'bad_socket',
] as const;

export type DatagramRejectReason = (typeof DATAGRAM_REJECT_REASONS)[number];

export type ParseResult =
  | { ok: true; message: DatagramMessage }
  | { ok: false; reason: DatagramRejectReason; detail: string };

export interface DatagramLimits {
  /** Largest whole datagram (header line, '\n' and payload), in bytes. */
  maxDatagramBytes: number;
  maxChannelNameLength: number;
  /** Most distinct channels one datagram may name. */
  maxChannels: number;
}

/** Protocol constants (docs/protocol.md). */
export const DATAGRAM_V1 = {
  VERSION: 1,
  NEWLINE: 0x0a,
  MAX_ID_BYTES: 256,
} as const;

// fatal: invalid UTF-8 in the header is rejected rather than silently turned into U+FFFD.
// ignoreBOM: a leading BOM is kept, so JSON.parse rejects it as PHP's json_decode would.
const headerDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Rejects CR, LF and NUL: they would break an SSE field line (hono streaming/sse.ts does too). */
const LINE_BREAKING = /[\r\n\0]/;

function reject(reason: DatagramRejectReason, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

/**
 * Parses one datagram. Never throws: any input yields `{ ok: true }` or a reason. Unknown header
 * keys are ignored (forward compatibility); a `v` other than 1 is `bad_version`.
 */
export function parseDatagram(datagram: Buffer, limits: DatagramLimits): ParseResult {
  if (datagram.length === 0) return reject('empty', 'empty datagram');
  if (datagram.length > limits.maxDatagramBytes) {
    return reject(
      'too_large',
      `datagram is ${datagram.length} bytes; the limit is ${limits.maxDatagramBytes}`,
    );
  }
  const newline = datagram.indexOf(DATAGRAM_V1.NEWLINE);
  if (newline === -1) return reject('no_header_line', 'no \\n after the JSON header line');

  let header: unknown;
  try {
    header = JSON.parse(headerDecoder.decode(datagram.subarray(0, newline)));
  } catch (err) {
    // TypeError: invalid UTF-8; SyntaxError: bad JSON; RangeError: pathological nesting.
    return reject('bad_json', `header line: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    return reject('bad_json', 'header line is not a JSON object');
  }
  const fields = header as Record<string, unknown>;
  const field = (key: string): unknown => (Object.hasOwn(fields, key) ? fields[key] : undefined);

  const version = field('v');
  if (version !== undefined && version !== DATAGRAM_V1.VERSION) {
    return reject('bad_version', `unsupported protocol version ${JSON.stringify(version)}`);
  }

  const channels = readChannels(field('channel'), field('channels'), limits);
  if (!Array.isArray(channels)) return channels;

  const message: DatagramMessage = {
    channels,
    close: false,
    data: datagram.subarray(newline + 1),
  };

  const event = field('event');
  if (event !== undefined) {
    if (typeof event !== 'string') return reject('bad_event', 'event is not a string');
    if (event.length === 0) return reject('bad_event', 'event is empty; omit it for "message"');
    if (LINE_BREAKING.test(event)) return reject('bad_event', 'event contains CR, LF or NUL');
    message.event = event;
  }

  const id = field('id');
  if (id !== undefined) {
    if (typeof id !== 'string') return reject('bad_id', 'id is not a string');
    if (id.length === 0) return reject('bad_id', 'id is empty; omit it');
    if (LINE_BREAKING.test(id)) return reject('bad_id', 'id contains CR, LF or NUL');
    const idBytes = Buffer.byteLength(id);
    if (idBytes > DATAGRAM_V1.MAX_ID_BYTES) {
      return reject('bad_id', `id is ${idBytes} bytes; the limit is ${DATAGRAM_V1.MAX_ID_BYTES}`);
    }
    message.id = id;
  }

  const close = field('close');
  if (close !== undefined) {
    // No dedicated reason: a wrongly typed known key is a malformed header.
    if (typeof close !== 'boolean') return reject('bad_json', 'close is not a boolean');
    message.close = close;
  }

  const socket = field('socket');
  if (socket !== undefined) {
    if (typeof socket !== 'string' || !isSocketId(socket)) {
      return reject('bad_socket', `socket must be ${SOCKET_ID_FORMAT}`);
    }
    message.socket = socket;
  } else {
    const legacy = stripLegacySocket(message.data);
    if (legacy !== null) {
      message.data = legacy.data;
      message.socket = legacy.socket;
    }
  }

  return { ok: true, message };
}

/** `"socket":"<id>"}` closing a JSON object, as the legacy broadcaster appended it (the id is
 * checked with isSocketId). */
const LEGACY_SOCKET_TAIL = /(?:^\{|,)"socket":"([0-9.]{3,41})"\}$/;
/** Longest tail that regexp can match: `,"socket":"` (11) + 41 + `"}` (2). */
const LEGACY_SOCKET_TAIL_MAX_BYTES = 11 + 41 + 2;

/**
 * Askr's Laravel broadcaster before the `socket` header key (issue 12) kept toOthers()'s socket
 * id in the JSON payload, appended as its last top-level member: `{…,"socket":"123.456"}` or
 * `{"socket":"123.456"}`. A datagram without a `socket` key whose payload is a JSON object ending
 * exactly so has that member cut (so no subscriber sees it) and its value used as the socket.
 * Only that byte shape, and only when the whole payload parses as a JSON object whose `socket` is
 * that value (so the member is top level, not in a string or a nested object); any other payload
 * is left untouched, byte for byte. Returns null when there is nothing to strip.
 */
export function stripLegacySocket(data: Buffer): { data: Buffer; socket: string } | null {
  // Cheap test first: the payload must end with `"}` (anything else costs one byte compare).
  if (data.length < 16 || data[data.length - 1] !== 0x7d || data[data.length - 2] !== 0x22) {
    return null;
  }
  const tailStart = Math.max(0, data.length - LEGACY_SOCKET_TAIL_MAX_BYTES);
  const tail = LEGACY_SOCKET_TAIL.exec(data.subarray(tailStart).toString('latin1'));
  if (tail === null) return null;
  const socket = tail[1] as string;
  if (!isSocketId(socket)) return null;
  const memberAt = data.length - tail[0].length + (tail[0].startsWith('{') ? 1 : 0);
  if (tail[0].startsWith('{') && memberAt - 1 !== 0) return null; // `{` must open the payload
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch {
    return null; // not JSON: not the broadcaster's payload
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
  if ((parsed as Record<string, unknown>)['socket'] !== socket) return null;
  // `{…,"socket":"1.2"}` → `{…}`; `{"socket":"1.2"}` → `{}`.
  const kept = data.subarray(0, memberAt);
  return { data: Buffer.concat([kept, Buffer.from('}')]), socket };
}

/** Both keys may be given; their names are merged, deduplicated in first-seen order. */
function readChannels(
  single: unknown,
  list: unknown,
  limits: DatagramLimits,
): string[] | ParseResult {
  if (single === undefined && list === undefined) {
    return reject('no_channel', 'header has neither "channel" nor "channels"');
  }
  const names: string[] = [];
  if (single !== undefined) {
    if (typeof single !== 'string') return reject('bad_channel', 'channel is not a string');
    names.push(single);
  }
  if (list !== undefined) {
    if (!Array.isArray(list)) return reject('bad_channel', 'channels is not an array');
    for (const name of list as unknown[]) {
      if (typeof name !== 'string') return reject('bad_channel', 'channels has a non-string');
      names.push(name);
    }
  }
  if (names.length === 0) return reject('no_channel', 'channels is empty');

  const unique = [...new Set(names)];
  if (unique.length > limits.maxChannels) {
    return reject(
      'too_many_channels',
      `${unique.length} channels; the limit is ${limits.maxChannels}`,
    );
  }
  for (const name of unique) {
    const problem = channelNameProblem(name, limits.maxChannelNameLength);
    if (problem !== null) return reject('bad_channel', problem);
  }
  return unique;
}

/**
 * Builds a v1 datagram in canonical form: key order channel|channels, event, id, close, socket;
 * one channel as `channel`, several as `channels`; `close` only when true; no `v`. Validates
 * nothing (so tests can build bad datagrams): `parseDatagram` is the judge. Strings are UTF-8
 * encoded.
 */
export function encodeDatagram(message: {
  channels: string | string[];
  data: Buffer | string;
  event?: string;
  id?: string;
  close?: boolean;
  socket?: string;
}): Buffer {
  const { channels } = message;
  const header: Record<string, unknown> =
    typeof channels === 'string'
      ? { channel: channels }
      : channels.length === 1
        ? { channel: channels[0] }
        : { channels };
  if (message.event !== undefined) header['event'] = message.event;
  if (message.id !== undefined) header['id'] = message.id;
  if (message.close === true) header['close'] = true;
  if (message.socket !== undefined) header['socket'] = message.socket;
  const data = typeof message.data === 'string' ? Buffer.from(message.data) : message.data;
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), data]);
}
