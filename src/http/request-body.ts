/**
 * Prepares a request body for FastCGI. FPM needs CONTENT_LENGTH before STDIN (DESIGN.md §3):
 * a body with Content-Length is streamed straight through (with backpressure); a chunked body is
 * buffered first, in memory up to `memoryBytes`, then in a temp file, and refused past `maxBytes`.
 *
 *   client ──chunked──▶ [memory ≤ memoryBytes] ──overflow──▶ [temp file ≤ maxBytes] ──▶ FPM STDIN
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import { ErrorCodes, SidecarError } from '../errors.ts';

export interface BodyLimits {
  maxBytes: number;
  memoryBytes: number;
  tempDir: string;
}

export interface PreparedBody {
  /** Bytes FPM will receive (CONTENT_LENGTH); null when the request has no body. */
  length: number | null;
  body: Buffer | Readable | null;
  /** Removes any temp file; safe to call twice. */
  cleanup(): Promise<void>;
}

const noCleanup = (): Promise<void> => Promise.resolve();

export function tooLarge(length: number, maxBytes: number): SidecarError {
  return new SidecarError(
    ErrorCodes.BODY_TOO_LARGE,
    `request body of ${length} bytes exceeds the limit of ${maxBytes} bytes (server.max_body_size)`,
    { status: 413 },
  );
}

/** Throws SidecarError 413 (too large) or 400 (bad framing). */
export async function prepareBody(req: IncomingMessage, limits: BodyLimits): Promise<PreparedBody> {
  const lengthHeader = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked) {
    const length = lengthHeader === undefined ? 0 : Number(lengthHeader);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new SidecarError(ErrorCodes.BAD_REQUEST, 'invalid Content-Length', { status: 400 });
    }
    if (length > limits.maxBytes) throw tooLarge(length, limits.maxBytes);
    if (lengthHeader === undefined) return { length: null, body: null, cleanup: noCleanup };
    return { length, body: length === 0 ? null : req, cleanup: noCleanup };
  }
  return bufferChunked(req, limits);
}

async function bufferChunked(req: IncomingMessage, limits: BodyLimits): Promise<PreparedBody> {
  const chunks: Buffer[] = [];
  let total = 0;
  let file: WriteStream | null = null;
  let dir: string | null = null;
  const cleanup = async (): Promise<void> => {
    file?.destroy();
    if (dir !== null) {
      const d = dir;
      dir = null;
      await rm(d, { recursive: true, force: true });
    }
  };
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > limits.maxBytes) throw tooLarge(total, limits.maxBytes);
      if (file === null && total <= limits.memoryBytes) {
        chunks.push(chunk);
        continue;
      }
      if (file === null) {
        dir = await mkdtemp(join(limits.tempDir || tmpdir(), 'askr-body-'));
        file = createWriteStream(join(dir, 'body'));
        for (const c of chunks) file.write(c);
        chunks.length = 0;
      }
      if (!file.write(chunk)) await once(file, 'drain');
    }
    if (file === null) {
      return { length: total, body: total === 0 ? null : Buffer.concat(chunks, total), cleanup };
    }
    const written = file;
    written.end();
    await once(written, 'finish');
    const path = join(dir ?? '', 'body');
    return { length: total, body: createReadStream(path), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
