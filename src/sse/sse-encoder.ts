/**
 * Server-Sent Events frame encoder (WHATWG HTML "Server-sent events", §9.2.6). Pure: no I/O.
 * Invariants: a frame always ends with one blank line; `id`/`event` never carry a line break (a
 * CR or LF there would let a publisher inject fields, so it throws); data bytes pass through
 * unchanged except that CR, LF and CRLF become `data:` line boundaries. One output allocation,
 * of its own: frames are kept in the replay history, where a slice of Buffer's shared pool would
 * keep its whole slab alive (kept-bytes.ts).
 */
import { ErrorCodes, SidecarError } from '../errors.ts';
import { keptAlloc } from './kept-bytes.ts';

/** One SSE frame. Fields are written in the order comment, retry, id, event, data. */
export interface SseFrame {
  /** `id:` value; must not contain CR, LF or NUL (a NUL id is ignored by parsers). */
  id?: string;
  /** `event:` value (event type); must not contain CR or LF. */
  event?: string;
  /** Payload; a string is UTF-8 encoded, a Buffer is written byte for byte. */
  data?: string | Buffer;
  /** `retry:` reconnection delay in milliseconds (non-negative integer). */
  retryMs?: number;
  /** Comment text, written as `: text` lines (CR/LF split it into several comment lines). */
  comment?: string;
}

const CR = 0x0d;
const LF = 0x0a;
const ID_FORBIDDEN = /[\r\n\0]/;
const EVENT_FORBIDDEN = /[\r\n]/;
const LINE_BREAK = /\r\n|\r|\n/;

/** The heartbeat: a comment the browser ignores but that keeps proxies and NATs from timing out. */
export const PING_FRAME: Buffer = Buffer.from(': ping\n\n');

function reject(message: string): never {
  throw new SidecarError(ErrorCodes.SSE_ENCODE, message);
}

/**
 * Line boundaries of `buf` as a flat [start0, end0, start1, end1, ...] list. CRLF is one break,
 * a lone CR or LF is one break; a trailing break yields a final empty line, so that decoding
 * (which joins data lines with LF) restores the payload exactly when it used LF line endings.
 */
function splitLines(buf: Buffer): number[] {
  const bounds: number[] = [];
  const n = buf.length;
  let pos = 0;
  // Two native scans instead of a byte loop in JS: payloads are mostly single-line JSON.
  let nextCr = buf.indexOf(CR, 0);
  let nextLf = buf.indexOf(LF, 0);
  for (;;) {
    if (nextCr === -1 && nextLf === -1) {
      bounds.push(pos, n);
      return bounds;
    }
    let brk: number;
    let width: number;
    if (nextCr !== -1 && (nextLf === -1 || nextCr < nextLf)) {
      brk = nextCr;
      width = nextLf === nextCr + 1 ? 2 : 1;
    } else {
      brk = nextLf;
      width = 1;
    }
    bounds.push(pos, brk);
    pos = brk + width;
    if (nextCr !== -1 && nextCr < pos) nextCr = buf.indexOf(CR, pos);
    if (nextLf !== -1 && nextLf < pos) nextLf = buf.indexOf(LF, pos);
  }
}

/**
 * Encodes one frame.
 * @throws SidecarError(SSE_ENCODE) when `id` contains CR, LF or NUL, when `event`
 *   contains CR or LF, or when `retryMs` is not a non-negative integer.
 */
export function encodeFrame(frame: SseFrame): Buffer {
  const { id, event, data, retryMs, comment } = frame;
  if (id !== undefined && ID_FORBIDDEN.test(id)) reject('SSE id must not contain CR, LF or NUL');
  if (event !== undefined && EVENT_FORBIDDEN.test(event)) {
    reject('SSE event name must not contain CR or LF');
  }
  if (retryMs !== undefined && !(Number.isSafeInteger(retryMs) && retryMs >= 0)) {
    reject(`SSE retry must be a non-negative integer, got ${String(retryMs)}`);
  }

  // Everything but the data is short: build it as a string, written with one Buffer#write.
  let head = '';
  if (comment !== undefined) {
    for (const line of comment.split(LINE_BREAK)) head += line === '' ? ':\n' : `: ${line}\n`;
  }
  if (retryMs !== undefined) head += `retry: ${retryMs}\n`;
  if (id !== undefined) head += `id: ${id}\n`;
  if (event !== undefined) head += `event: ${event}\n`;
  const headBytes = Buffer.byteLength(head);

  if (data === undefined) {
    const out = keptAlloc(headBytes + 1);
    out.write(head, 0, 'utf8');
    out[headBytes] = LF;
    return out;
  }

  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const bounds = splitLines(body);
  let size = headBytes + 1;
  for (let i = 0; i < bounds.length; i += 2) {
    const len = (bounds[i + 1] ?? 0) - (bounds[i] ?? 0);
    // "data:" + (" " when non-empty) + line + LF; the space keeps a leading space in the
    // payload intact (parsers strip exactly one).
    size += len === 0 ? 6 : 7 + len;
  }
  const out = keptAlloc(size);
  let at = out.write(head, 0, 'utf8');
  for (let i = 0; i < bounds.length; i += 2) {
    const start = bounds[i] ?? 0;
    const end = bounds[i + 1] ?? 0;
    at += out.write(start === end ? 'data:' : 'data: ', at, 'latin1');
    at += body.copy(out, at, start, end);
    out[at++] = LF;
  }
  out[at] = LF;
  return out;
}
