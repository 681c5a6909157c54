/**
 * Serves one regular file the caller has already resolved and allowed: conditional requests, byte
 * ranges including multipart/byteranges, and precompressed FILE.br / FILE.gz siblings (header logic
 * in static-negotiation.ts), small files from the open-file cache when one is given. Invariants:
 * the headers describe exactly the bytes sent (they come from fstat of the descriptor the bytes are
 * read from, now or when the cache read them); every descriptor opened here is closed before the promise settles,
 * client abort included; client mistakes and aborts become a status, never a rejection.
 */

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  createReadStream,
  fstatSync,
  openSync,
  readSync,
  statSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { contentTypeFor } from './mime-types.ts';
import type { OpenFileCache } from './open-file-cache.ts';
import { acceptedEncodings, decide, etagOf, lastModifiedOf } from './static-negotiation.ts';
import type { ByteRange, Decision, Encoding } from './static-negotiation.ts';

export interface StaticOptions {
  /** Cache-Control value for files; '' sends none. */
  cacheControl: string;
  /** Look for FILE.br / FILE.gz siblings and send one when the client accepts its encoding. */
  precompressed: boolean;
  /**
   * static.open_file_cache: sibling lookups and small files' bytes come from it (each at most
   * its validity old); null or absent reads the file system on every request.
   */
  fileCache?: OpenFileCache | null;
}

export interface StaticResult {
  /** Status sent. */
  status: number;
  /** Body bytes handed to the response (0 for HEAD and 304; fewer than promised on client abort). */
  bytes: number;
}

// O_NONBLOCK: if the path was swapped for a FIFO after the caller's stat, open() must not park a
// libuv thread forever waiting for a writer (nginx opens files non-blocking for the same reason).
// It changes nothing for reads from a regular file.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

const SIBLING_SUFFIX: Readonly<Record<Encoding, string>> = { br: '.br', gzip: '.gz' };

// open()/stat() failures that mean "not there (any more)" and "not allowed to read".
const MISSING: ReadonlySet<string | undefined> = new Set([
  'ENOENT',
  'ENOTDIR',
  'ELOOP',
  'ENAMETOOLONG',
]);
const DENIED: ReadonlySet<string | undefined> = new Set(['EACCES', 'EPERM']);

interface Representation {
  path: string;
  stat: Stats;
  /** Content-Encoding of this file; null for the identity file. */
  encoding: Encoding | null;
}

interface BodyPart {
  /** Multipart part header written before the bytes, or null. */
  head: Buffer | null;
  start: number;
  /** Inclusive; end < start for an empty file. */
  end: number;
}

/**
 * Serves one regular file. Never throws for client errors: they become 304, 405 (with
 * `Allow: GET, HEAD`), 412 or 416; a file gone between the caller's stat and our open is 404, an
 * unreadable one 403. A client abort resolves with the bytes handed over so far
 * (`res.writableFinished` is then false). Rejects only on unexpected I/O errors (EIO, EMFILE, a
 * file that shrank while being sent) with a SidecarError `ASKR_ERR_STATIC_FILE` (answered 500, the
 * system error as `cause`), after which the caller destroys the response (pipeline already has if
 * the body had started).
 */
export async function serveStaticFile(
  req: IncomingMessage,
  res: ServerResponse,
  filePath: string,
  stat: Stats,
  options: StaticOptions,
): Promise<StaticResult> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return sendText(req, res, 405, { Allow: 'GET, HEAD' });
  }
  // Ranges address the identity bytes: a Range request never gets a precompressed sibling.
  const candidates =
    options.precompressed && req.headers.range === undefined
      ? findSibling(filePath, req.headers['accept-encoding'], options.fileCache)
      : [];
  candidates.push({ path: filePath, stat, encoding: null });
  const contentType = contentTypeFor(filePath);

  for (const rep of candidates) {
    // Revalidation is the common case for static assets: 304/412 need no descriptor at all.
    const early = decide(req.headers, rep.stat, rep.encoding === null);
    if (early.kind === 'not-modified' || early.kind === 'precondition-failed') {
      return sendWithoutBody(req, res, rep.stat, early, options);
    }
    if (early.kind === 'full' && options.fileCache != null) {
      const cached = serveCached(req, res, options.fileCache, rep, contentType, options);
      if (cached === 'absent') continue;
      if (cached !== null) return cached;
    } else if (early.kind === 'full' && rep.stat.size <= SMALL_FILE_BYTES) {
      const small = serveSmallSync(req, res, rep, contentType, options);
      if (small === 'absent') continue;
      if (small !== null) return small;
    }
    let handle: FileHandle;
    try {
      handle = await open(rep.path, OPEN_FLAGS);
    } catch (err) {
      const code = errnoCode(err);
      // Gone since the stat (or an unreadable sibling): fall back to the next candidate, then 404.
      if (MISSING.has(code) || (rep.encoding !== null && DENIED.has(code))) continue;
      if (DENIED.has(code)) return sendText(req, res, 403);
      throw fileError('open', rep.path, err);
    }
    try {
      const fresh = await handle.stat().catch((err: unknown) => {
        throw fileError('fstat', rep.path, err);
      });
      if (!fresh.isFile()) continue;
      return await respond(req, res, handle, { ...rep, stat: fresh }, contentType, options);
    } finally {
      await handle.close().catch((err: unknown) => {
        throw fileError('close', rep.path, err);
      });
    }
  }
  return sendText(req, res, 404);
}

/** Whole small files are read and sent in one piece (see serveSmallSync). */
const SMALL_FILE_BYTES = 64 * 1024;

/**
 * The hot path for assets: a whole (no Range), small file is opened, fstat'ed, read and closed
 * synchronously and answered with one write. Each of those is a few microseconds on a local file
 * system, against a threadpool round trip each on the asynchronous path plus a stream and
 * pipeline() per response (bench:proxy measured ~150 us of CPU per 16 KiB file that way).
 * Returns null to fall back to the streaming path (the file grew, or no longer wants a plain 200),
 * 'absent' when it vanished. Same error semantics as the streaming path.
 */
function serveSmallSync(
  req: IncomingMessage,
  res: ServerResponse,
  rep: Representation,
  contentType: string,
  options: StaticOptions,
): StaticResult | 'absent' | null {
  let fd: number;
  try {
    fd = openSync(rep.path, OPEN_FLAGS);
  } catch (err) {
    const code = errnoCode(err);
    if (MISSING.has(code) || (rep.encoding !== null && DENIED.has(code))) return 'absent';
    if (DENIED.has(code)) return sendText(req, res, 403);
    throw fileError('open', rep.path, err);
  }
  try {
    const fresh = fstatSync(fd);
    if (!fresh.isFile()) return 'absent';
    if (fresh.size > SMALL_FILE_BYTES) return null;
    if (decide(req.headers, fresh, rep.encoding === null).kind !== 'full') return null;
    const head = req.method === 'HEAD';
    const body = head ? null : Buffer.allocUnsafe(fresh.size);
    if (body !== null && fresh.size > 0) {
      let read = 0;
      while (read < fresh.size) {
        const n = readSync(fd, body, read, fresh.size - read, read);
        if (n === 0) break;
        read += n;
      }
      if (read !== fresh.size) {
        throw new SidecarError(
          ErrorCodes.STATIC_FILE,
          `static file shrank while being read: ${rep.path} (${read} of ${fresh.size} bytes)`,
        );
      }
    }
    return sendWhole(res, fresh, body, rep.encoding, contentType, options);
  } catch (err) {
    throw err instanceof SidecarError ? err : fileError('read', rep.path, err);
  } finally {
    closeSync(fd);
  }
}

/**
 * serveSmallSync from the open-file cache: the bytes and the stat they were read under, so the
 * validators match the body. Returns null to stream instead (a large file, or one that no longer
 * wants a plain 200 under its current stat), 'absent' when it is gone.
 */
function serveCached(
  req: IncomingMessage,
  res: ServerResponse,
  cache: OpenFileCache,
  rep: Representation,
  contentType: string,
  options: StaticOptions,
): StaticResult | 'absent' | null {
  const found = cache.read(rep.path);
  if (found === null) return null;
  if ('kind' in found) {
    if (found.kind !== 'error') return found.kind === 'file' ? null : 'absent';
    if (MISSING.has(found.code) || rep.encoding !== null) return 'absent';
    return sendText(req, res, 403);
  }
  const { stat, body } = found;
  if (decide(req.headers, stat, rep.encoding === null).kind !== 'full') return null;
  return sendWhole(
    res,
    stat,
    req.method === 'HEAD' ? null : body,
    rep.encoding,
    contentType,
    options,
  );
}

/**
 * A whole file in one 200: its validators and content headers, then `body` (null for HEAD).
 * Headers and body leave in one write: end() corks the socket around both.
 */
function sendWhole(
  res: ServerResponse,
  stat: Stats,
  body: Buffer | null,
  encoding: Encoding | null,
  contentType: string,
  options: StaticOptions,
): StaticResult {
  const headers: OutgoingHttpHeaders = {
    ...validatorHeaders(stat, options),
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
    'Content-Type': contentType,
    'Content-Length': stat.size,
  };
  if (encoding !== null) headers['Content-Encoding'] = encoding;
  res.writeHead(200, headers);
  res.end(body ?? undefined);
  return { status: 200, bytes: body?.length ?? 0 };
}

/** Answers from an open descriptor and its fstat, which may differ from the caller's stat. */
async function respond(
  req: IncomingMessage,
  res: ServerResponse,
  handle: FileHandle,
  rep: Representation,
  contentType: string,
  options: StaticOptions,
): Promise<StaticResult> {
  const decision = decide(req.headers, rep.stat, rep.encoding === null);
  const size = rep.stat.size;
  if (decision.kind === 'not-modified' || decision.kind === 'precondition-failed') {
    return sendWithoutBody(req, res, rep.stat, decision, options);
  }
  if (decision.kind === 'unsatisfiable') {
    return sendText(req, res, 416, {
      ...validatorHeaders(rep.stat, options),
      'Accept-Ranges': 'bytes',
      'Content-Range': `bytes */${size}`,
    });
  }
  const headers: OutgoingHttpHeaders = {
    ...validatorHeaders(rep.stat, options),
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
    'Content-Type': contentType,
  };
  if (rep.encoding !== null) headers['Content-Encoding'] = rep.encoding;

  let status = 200;
  let parts: BodyPart[] = [{ head: null, start: 0, end: size - 1 }];
  let trailer: Buffer | null = null;
  if (decision.kind === 'full') {
    headers['Content-Length'] = size;
  } else if (decision.ranges.length === 1) {
    const [range] = decision.ranges as [ByteRange];
    status = 206;
    parts = [{ head: null, ...range }];
    headers['Content-Length'] = range.end - range.start + 1;
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  } else {
    status = 206;
    const boundary = randomBytes(12).toString('hex');
    ({ parts, trailer } = multipart(decision.ranges, boundary, contentType, size));
    let length = trailer.length;
    for (const part of parts) length += (part.head?.length ?? 0) + part.end - part.start + 1;
    headers['Content-Type'] = `multipart/byteranges; boundary=${boundary}`;
    headers['Content-Length'] = length;
  }
  res.writeHead(status, headers);
  // RFC 9110 §9.3.2: HEAD gets the very headers GET would, ranges included, and no body.
  if (req.method === 'HEAD') {
    res.end();
    return { status, bytes: 0 };
  }
  return { status, bytes: await streamBody(res, rep.path, handle, parts, trailer) };
}

/**
 * Lays out a multipart/byteranges body (RFC 9110 §14.6) as nginx does: each part is CRLF, the
 * delimiter, its own Content-Type and Content-Range, a blank line, the bytes; then the close
 * delimiter `CRLF--boundary--CRLF`. The boundary is random (96 bits): file bytes cannot aim at it.
 */
function multipart(
  ranges: readonly ByteRange[],
  boundary: string,
  contentType: string,
  size: number,
): { parts: BodyPart[]; trailer: Buffer } {
  const parts = ranges.map((range) => ({
    head: Buffer.from(
      `\r\n--${boundary}\r\nContent-Type: ${contentType}\r\n` +
        `Content-Range: bytes ${range.start}-${range.end}/${size}\r\n\r\n`,
      'latin1',
    ),
    ...range,
  }));
  return { parts, trailer: Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1') };
}

/**
 * Streams the parts through pipeline(), so socket backpressure reaches the file reads. Returns the
 * body bytes handed to `res`. A client abort resolves; a failed file read rejects with its error.
 */
async function streamBody(
  res: ServerResponse,
  path: string,
  handle: FileHandle,
  parts: readonly BodyPart[],
  trailer: Buffer | null,
): Promise<number> {
  const state = { bytes: 0, readFailed: false, readError: undefined as unknown };
  async function* source(): AsyncGenerator<Buffer> {
    for (const part of parts) {
      if (part.head !== null) {
        yield part.head;
        state.bytes += part.head.length;
      }
      if (part.end < part.start) continue;
      try {
        // autoClose off keeps the descriptor open past the end of one part for the next. On abort,
        // pipeline calls return() on this generator, which destroys the stream, and destroy()
        // closes the FileHandle anyway; serveStaticFile's close() is then a no-op (idempotent).
        const stream = createReadStream(path, {
          fd: handle,
          start: part.start,
          end: part.end,
          autoClose: false,
        });
        let read = 0;
        // Counted once the yield resumes, i.e. after pipeline wrote the chunk to the response.
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          read += chunk.length;
          yield chunk;
          state.bytes += chunk.length;
        }
        // Truncated under us: ending now would leave the client waiting for bytes promised by
        // Content-Length on a desynchronised connection. Failing makes pipeline destroy it.
        if (read !== part.end - part.start + 1) {
          throw new SidecarError(
            ErrorCodes.STATIC_FILE,
            `static file shrank while being sent: ${path} (${read} of ${part.end - part.start + 1} bytes from ${part.start})`,
          );
        }
      } catch (err) {
        // Only the file read throws here: an abort arrives as return(), which skips this catch.
        // Remembered because pipeline() may report the response's own error instead.
        state.readFailed = true;
        state.readError = err instanceof SidecarError ? err : fileError('read', path, err);
        throw err;
      }
    }
    if (trailer !== null) {
      yield trailer;
      state.bytes += trailer.length;
    }
  }
  try {
    await pipeline(source(), res);
  } catch {
    if (state.readFailed) throw state.readError;
    // Anything else failed on the response side: the client went away (ECONNRESET, EPIPE,
    // premature close). Not a failure of ours, and not lost: the short byte count and
    // res.writableFinished === false tell the caller, which logs the request as 499.
  }
  return state.bytes;
}

/** The first acceptable FILE.br / FILE.gz that exists as a regular file, as a 0- or 1-element list. */
function findSibling(
  filePath: string,
  acceptEncoding: string | undefined,
  cache: OpenFileCache | null | undefined,
): Representation[] {
  for (const encoding of acceptedEncodings(acceptEncoding)) {
    const path = filePath + SIBLING_SUFFIX[encoding];
    if (cache != null) {
      // Absent siblings are the common case: a negative entry makes them free within validity.
      const info = cache.lookup(path);
      if (info.kind === 'file') return [{ path, stat: info.stat, encoding }];
      continue;
    }
    try {
      // Synchronous: a local stat is 1-6 us, a threadpool round trip several times that.
      const stat = statSync(path, { throwIfNoEntry: false });
      if (stat?.isFile() === true) return [{ path, stat, encoding }];
    } catch (err) {
      // An absent or unreadable sibling only means "send the identity file".
      const code = errnoCode(err);
      if (!MISSING.has(code) && !DENIED.has(code)) throw fileError('stat', path, err);
    }
  }
  return [];
}

function sendWithoutBody(
  req: IncomingMessage,
  res: ServerResponse,
  stat: Stats,
  decision: Decision,
  options: StaticOptions,
): StaticResult {
  if (decision.kind === 'precondition-failed') {
    return sendText(req, res, 412, validatorHeaders(stat, options));
  }
  // RFC 9110 §15.4.5: a 304 carries the validators, Cache-Control and Vary a 200 would have had,
  // and no content headers.
  res.writeHead(304, validatorHeaders(stat, options));
  res.end();
  return { status: 304, bytes: 0 };
}

/** A short text/plain answer for statuses without a file body. */
function sendText(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  extra: OutgoingHttpHeaders = {},
): StaticResult {
  const body = Buffer.from(`${status} ${STATUS_CODES[status] ?? ''}\n`);
  res.writeHead(status, {
    ...extra,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': body.length,
    'X-Content-Type-Options': 'nosniff',
  });
  if (req.method === 'HEAD') {
    res.end();
    return { status, bytes: 0 };
  }
  res.end(body);
  return { status, bytes: body.length };
}

// The open-file cache hands out the same Stats object for as long as it trusts an entry: its
// validators are formatted once, not per request (a Date and two strings each time otherwise).
const validatorMemo = new WeakMap<Stats, { etag: string; lastModified: string }>();

function validatorHeaders(stat: Stats, options: StaticOptions): OutgoingHttpHeaders {
  let memo = validatorMemo.get(stat);
  if (memo === undefined) {
    memo = { etag: etagOf(stat), lastModified: lastModifiedOf(stat) };
    validatorMemo.set(stat, memo);
  }
  const headers: OutgoingHttpHeaders = { ETag: memo.etag, 'Last-Modified': memo.lastModified };
  if (options.cacheControl !== '') headers['Cache-Control'] = options.cacheControl;
  // Whenever a sibling may be chosen, caches must key on Accept-Encoding even for the identity
  // answer, or a client without br could be served a cached .br body.
  if (options.precompressed) headers['Vary'] = 'Accept-Encoding';
  return headers;
}

function fileError(op: string, path: string, cause: unknown): SidecarError {
  return new SidecarError(ErrorCodes.STATIC_FILE, `static file ${op} failed: ${path}`, {
    cause,
  });
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
