/**
 * Reading a PHP response off a FastCGI call, the one home for it: parse the CGI head, hand out
 * the body as a reader, collect a bounded body (holds, internal requests), or spool all of it as
 * fast as FPM writes so the worker is free at END_REQUEST (buffering). Also which response
 * headers are instructions to the front server and never reach a client.
 * Invariant: nothing here knows HTTP servers; callers decide statuses.
 */
import type { FcgiCall } from '../fastcgi/pool.ts';
import { CgiHeadParser, type CgiHead, type CgiParseResult } from './cgi-head.ts';
import { readerOf, type BodyReader } from './pump.ts';
import type { Spool } from './spool.ts';

/** Largest CGI head accepted from PHP (nginx fastcgi_buffer_size is 4-8k; be generous). */
export const MAX_CGI_HEAD_BYTES = 64 * 1024;

export interface PhpResponse {
  head: CgiHead;
  /** Body bytes that arrived with the head. */
  rest: Buffer;
  /** The rest of the body, in order (yields nothing when `complete`). */
  read: BodyReader;
  /** END_REQUEST had arrived with the head: `rest` is the whole body, already in memory. */
  complete: boolean;
}

export type PhpResponseResult = PhpResponse | { error: string };

const NOTHING: BodyReader = () => Promise.resolve(null);

/**
 * Waits for the CGI head. When END_REQUEST is already in (a small page arrives in one socket
 * read), the response is taken whole, synchronously (takeWholeResponse).
 */
export async function readPhpResponse(call: FcgiCall): Promise<PhpResponseResult> {
  const whole = takeWholeResponse(call);
  if (whole !== null) return whole;
  const parser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
  const iterator = call.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  for (;;) {
    const next = await iterator.next();
    const result = next.done === true ? parser.finish() : parser.push(next.value);
    if ('error' in result) return { error: result.error };
    if (result.done) {
      return { head: result.head, rest: result.rest, read: readerOf(iterator), complete: false };
    }
  }
}

/**
 * The response, parsed, when END_REQUEST has already arrived and nothing read stdout yet: STDOUT
 * is taken as it arrived (no stream, no await), the body is `rest` (a view of the socket chunk
 * when it came in one). Null otherwise: use readPhpResponse.
 */
export function takeWholeResponse(call: FcgiCall): PhpResponseResult | null {
  const chunks = call.takeStdout();
  if (chunks === null) return null;
  const parser = new CgiHeadParser(MAX_CGI_HEAD_BYTES);
  let result: CgiParseResult = { done: false };
  let used = 0;
  while (used < chunks.length) {
    result = parser.push(chunks[used] as Buffer);
    used += 1;
    if (result.done || 'error' in result) break;
  }
  // No blank line before the end: PHP printed headers only (or nothing).
  if (!result.done && !('error' in result)) result = parser.finish();
  if ('error' in result) return { error: result.error };
  if (!result.done) return { error: 'incomplete CGI head' };
  let rest = result.rest;
  if (used < chunks.length) {
    const parts = [rest, ...chunks.slice(used)];
    let length = 0;
    for (const part of parts) length += part.length;
    rest = Buffer.concat(parts, length);
  }
  return { head: result.head, rest, read: NOTHING, complete: true };
}

/**
 * The whole body in memory, or null when it grows past `maxBytes` (the caller aborts the call).
 * Resolves after END_REQUEST, so the worker is free when it returns a body.
 */
export async function collectBody(
  response: PhpResponse,
  call: FcgiCall,
  maxBytes: number,
): Promise<Buffer | null> {
  const parts: Buffer[] = response.rest.length > 0 ? [response.rest] : [];
  let size = response.rest.length;
  if (size > maxBytes) return null;
  for (;;) {
    const chunk = await response.read();
    if (chunk === null) break;
    size += chunk.length;
    if (size > maxBytes) return null;
    parts.push(chunk);
  }
  await call.done;
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
}

/**
 * Copies the whole body into `spool` as fast as FPM sends it (the FPM socket is never paused by
 * the client), then ends the spool at END_REQUEST. A failure of the call aborts the spool, so
 * the reader sees it. Resolves when the producer side is done, never rejects.
 */
export async function spoolBody(
  response: PhpResponse,
  call: FcgiCall,
  spool: Spool,
): Promise<void> {
  try {
    await spool.write(response.rest);
    for (;;) {
      const chunk = await response.read();
      if (chunk === null) break;
      await spool.write(chunk);
    }
    await call.done;
    spool.end();
  } catch (err) {
    call.abort();
    spool.abort(err instanceof Error ? err : new Error(String(err)));
  }
}

/** Response headers that are hop-by-hop or instructions to the front server. */
const INSTRUCTIONS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'x-accel-redirect',
  'x-accel-buffering',
  'x-accel-charset',
  'x-accel-expires',
  'x-accel-limit-rate',
  'x-sendfile',
]);

/** Whether a response header from PHP is for the sidecar (never forwarded to the client). */
export function isInstructionHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return INSTRUCTIONS.has(lower) || lower.startsWith('x-askr-') || lower.startsWith('grip-');
}

/**
 * PHP's headers as a flat [name, value, ...] list for writeHead, minus instructions and any
 * lowercase name in `drop`, plus X-Request-Id and `extra` (the sidecar's own, added beside PHP's
 * headers of the same name, e.g. Mercure discovery's Link).
 */
export function clientHeaders(
  head: CgiHead,
  requestId: string,
  drop: ReadonlySet<string> = new Set(),
  extra: readonly string[] = [],
): string[] {
  const out: string[] = [];
  for (const [name, value] of head.headers) {
    if (isInstructionHeader(name) || (drop.size > 0 && drop.has(name.toLowerCase()))) continue;
    out.push(name, value);
  }
  out.push('X-Request-Id', requestId, ...extra);
  return out;
}
