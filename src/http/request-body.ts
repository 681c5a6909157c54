/**
 * Prepares a request body for FastCGI. A PHP worker must never wait on a client's upload, so by
 * default the whole body is read first (nginx fastcgi_request_buffering): memory up to
 * `memoryBytes` (and the shared budget), then an unlinked temp file, refused past `maxBytes`
 * (413), and a client silent for `timeoutMs` between two reads gets 408. FPM also needs
 * CONTENT_LENGTH before STDIN (docs/architecture.md, Design notes), so a chunked body is
 * buffered even when streaming is asked for; a Content-Length body on a `stream_body_paths`
 * route goes straight through with backpressure.
 *
 *   client ─▶ [memory ≤ memoryBytes] ─overflow─▶ [temp file ≤ maxBytes] ─(complete)─▶ FPM STDIN
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { Spool, type MemoryBudget } from '../cgi/spool.ts';

export interface BodyLimits {
  maxBytes: number;
  memoryBytes: number;
  tempDir: string;
  budget: MemoryBudget;
  /** Longest silence between two reads of the body (408). */
  timeoutMs: number;
  /** Read the whole body before FPM sees it (false: stream a Content-Length body). */
  buffer: boolean;
  /** A body needed a temp file (metrics). */
  onTempFile?(): void;
}

export interface PreparedBody {
  /** Bytes FPM will receive (CONTENT_LENGTH); null when the request has no body. */
  length: number | null;
  body: Buffer | Readable | null;
  /** Releases memory and the temp file; safe to call twice. */
  cleanup(): Promise<void>;
}

const noCleanup = (): Promise<void> => Promise.resolve();

export function tooLarge(length: number, maxBytes: number): SidecarError {
  return new SidecarError(
    ErrorCodes.BODY_TOO_LARGE,
    `request body of ${length} bytes exceeds the limit of ${maxBytes} bytes (server.max_body_size)`,
  );
}

/** Throws SidecarError BODY_TOO_LARGE, BODY_TIMEOUT, BAD_REQUEST, BODY_ABORTED or TEMP_FILE. */
export async function prepareBody(req: IncomingMessage, limits: BodyLimits): Promise<PreparedBody> {
  const lengthHeader = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (!chunked) {
    const length = lengthHeader === undefined ? 0 : Number(lengthHeader);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new SidecarError(ErrorCodes.BAD_REQUEST, 'invalid Content-Length');
    }
    if (length > limits.maxBytes) throw tooLarge(length, limits.maxBytes);
    if (lengthHeader === undefined) return { length: null, body: null, cleanup: noCleanup };
    if (length === 0) return { length: 0, body: null, cleanup: noCleanup };
    if (!limits.buffer) return { length, body: req, cleanup: noCleanup };
  }
  return bufferBody(req, limits);
}

async function bufferBody(req: IncomingMessage, limits: BodyLimits): Promise<PreparedBody> {
  const spool = new Spool({
    memoryBytes: limits.memoryBytes,
    budget: limits.budget,
    tempDir: limits.tempDir,
    maxFileBytes: limits.maxBytes,
    onTempFile: () => limits.onTempFile?.(),
  });
  const cleanup = (): Promise<void> => spool.destroy();
  try {
    await readInto(req, spool, limits);
  } catch (err) {
    await cleanup();
    throw err;
  }
  spool.end();
  const total = spool.length;
  if (total === 0) {
    await cleanup();
    return { length: 0, body: null, cleanup: noCleanup };
  }
  if (!spool.usedFile) {
    // All in memory: one Buffer, sent in one write with the params.
    const parts: Buffer[] = [];
    for (let chunk = await spool.read(); chunk !== null; chunk = await spool.read()) {
      parts.push(chunk);
    }
    await cleanup();
    return { length: total, body: Buffer.concat(parts, total), cleanup: noCleanup };
  }
  return { length: total, body: spoolReadable(spool), cleanup };
}

/** Reads the request into the spool, with the size bound and the between-reads timeout. */
function readInto(req: IncomingMessage, spool: Spool, limits: BodyLimits): Promise<void> {
  return new Promise((resolve, reject) => {
    let total = 0;
    let writing: Promise<void> = Promise.resolve();
    let settled = false;
    const finish = (err: SidecarError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err === null) resolve();
      else {
        // Stop reading the rest of a refused body; the answer says why (408/413).
        req.pause();
        reject(err);
      }
    };
    const timer = setTimeout(() => {
      finish(
        new SidecarError(
          ErrorCodes.BODY_TIMEOUT,
          `the request body stalled: nothing received for ${limits.timeoutMs} ms (server.body_timeout)`,
        ),
      );
    }, limits.timeoutMs);
    const onData = (chunk: Buffer): void => {
      timer.refresh();
      total += chunk.length;
      if (total > limits.maxBytes) {
        finish(tooLarge(total, limits.maxBytes));
        return;
      }
      req.pause();
      writing = writing
        .then(() => spool.write(chunk))
        .then(
          () => {
            if (!settled) req.resume();
          },
          (err: unknown) => finish(err as SidecarError),
        );
    };
    const onEnd = (): void => {
      writing.then(
        () => finish(null),
        () => undefined, // already settled by the failed write
      );
    };
    const onError = (err: Error): void => {
      finish(
        new SidecarError(ErrorCodes.BODY_ABORTED, `request body failed: ${err.message}`, {
          cause: err,
        }),
      );
    };
    const onClose = (): void => {
      if (!req.complete) {
        finish(
          new SidecarError(ErrorCodes.BODY_ABORTED, 'the client closed before the whole body'),
        );
      }
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** The spooled body as a Readable for the FastCGI exchange (which pauses it for backpressure). */
function spoolReadable(spool: Spool): Readable {
  let reading = false;
  return new Readable({
    read() {
      if (reading) return;
      reading = true;
      spool.read().then(
        (chunk) => {
          reading = false;
          this.push(chunk);
        },
        (err: unknown) => {
          reading = false;
          this.destroy(err instanceof Error ? err : new Error(String(err)));
        },
      );
    },
  });
}
