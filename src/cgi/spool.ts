/**
 * A spool: bytes written at the producer's pace, read back in order at the consumer's pace, held
 * in memory up to a per-spool bound and a shared budget, then in an unlinked temp file (nginx's
 * fastcgi_buffers + fastcgi_temp_path). Used for PHP responses (FPM fast, client slow) and
 * request bodies (client slow, FPM waits for none of it).
 * Invariants: bytes come out exactly as they went in; memory held never exceeds `memoryBytes`
 * nor the budget (what the budget refuses goes to the file); the temp file is unlinked as soon
 * as it is opened, so nothing is ever left on disk, even after a crash; `destroy()` gives back
 * the memory and closes the file at once; when the file holds `maxFileBytes` unread bytes,
 * write() waits for the reader (the producer slows to the consumer's pace, as nginx does).
 *
 *   write ─▶ [memory segment]* ─┐
 *        └▶ [file segment]*  ───┴─▶ read (in write order) ─▶ consumer
 */
import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, SidecarError } from '../errors.ts';

/** Memory shared by every spool (server.buffer_memory_limit). */
export class MemoryBudget {
  /** May be changed at run time (reload); held bytes over a lowered limit drain as they are read. */
  limitBytes: number;
  #used = 0;

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  get usedBytes(): number {
    return this.#used;
  }

  /** Takes `bytes` if they fit; false leaves the budget unchanged. */
  tryTake(bytes: number): boolean {
    if (this.#used + bytes > this.limitBytes) return false;
    this.#used += bytes;
    return true;
  }

  /** Takes `bytes` even over the limit (a spool that may not use a file holds one chunk). */
  take(bytes: number): void {
    this.#used += bytes;
  }

  give(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}

export interface SpoolOptions {
  /** Memory this spool may hold before it uses the file. */
  memoryBytes: number;
  budget: MemoryBudget;
  /** Directory of the temp file; '' uses the OS temp directory. */
  tempDir: string;
  /** Unread bytes the file may hold; 0 never uses a file (write() then waits for the reader). */
  maxFileBytes: number;
  /** The spool opened its temp file (metrics). */
  onTempFile?(): void;
}

type Segment = { mem: Buffer } | { start: number; end: number };

/** Bytes read from the file per read() call. */
const FILE_READ_BYTES = 64 * 1024;

export class Spool {
  readonly #options: SpoolOptions;
  readonly #segments: Segment[] = [];
  #memoryHeld = 0;
  #file: FileHandle | null = null;
  #fileOpening: Promise<FileHandle> | null = null;
  /** Next write offset in the file; back to 0 whenever no file segment is unread. */
  #fileEnd = 0;
  #fileUnread = 0;
  #ended = false;
  #destroyed = false;
  #error: Error | null = null;
  #total = 0;
  /** Wakes a reader waiting for data, or a writer waiting for room. */
  #wake: (() => void) | null = null;

  constructor(options: SpoolOptions) {
    this.#options = options;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#total;
  }

  /** Whether a temp file was needed. */
  get usedFile(): boolean {
    return this.#file !== null || this.#fileOpening !== null;
  }

  /**
   * Appends bytes. Resolves once they are held (at once for memory; after the file write
   * otherwise). Rejects with TEMP_FILE when the file cannot be written, or when destroyed.
   */
  async write(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.#checkAlive();
    this.#total += chunk.length;
    if (
      this.#memoryHeld + chunk.length <= this.#options.memoryBytes &&
      this.#options.budget.tryTake(chunk.length)
    ) {
      this.#pushMemory(chunk);
      return;
    }
    if (this.#options.maxFileBytes === 0) {
      // No file allowed: the producer waits until the reader has taken everything held, then
      // this one chunk is held in memory whatever the budget says.
      await this.#waitFor(() => this.#segments.length === 0);
      this.#options.budget.take(chunk.length);
      this.#pushMemory(chunk);
      return;
    }
    await this.#waitFor(
      () => this.#fileUnread === 0 || this.#fileUnread + chunk.length <= this.#options.maxFileBytes,
    );
    const file = await this.#openFile();
    this.#checkAlive();
    if (this.#fileUnread === 0) this.#fileEnd = 0;
    const start = this.#fileEnd;
    this.#fileEnd += chunk.length;
    this.#fileUnread += chunk.length;
    try {
      let written = 0;
      while (written < chunk.length) {
        const r = await file.write(chunk, written, chunk.length - written, start + written);
        written += r.bytesWritten;
      }
    } catch (err) {
      throw this.#fail(err);
    }
    this.#checkAlive();
    const tail = this.#segments.at(-1);
    if (tail !== undefined && 'end' in tail && tail.end === start) tail.end = start + chunk.length;
    else this.#segments.push({ start, end: start + chunk.length });
    this.#notify();
  }

  /** No more writes: read() returns null once everything was read. */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** The producer failed: read() rejects with this error once it gets there. */
  abort(err: Error): void {
    this.#error ??= err;
    this.#notify();
  }

  /** The next bytes in order, or null at the end. Rejects on a producer or file error. */
  async read(): Promise<Buffer | null> {
    for (;;) {
      this.#checkAlive();
      const first = this.#segments[0];
      if (first !== undefined) {
        if ('mem' in first) {
          this.#segments.shift();
          this.#memoryHeld -= first.mem.length;
          this.#options.budget.give(first.mem.length);
          this.#notify();
          return first.mem;
        }
        return this.#readFile(first);
      }
      if (this.#error !== null) throw this.#error;
      if (this.#ended) return null;
      await this.#waitFor(() => this.#segments.length > 0 || this.#ended || this.#error !== null);
    }
  }

  /** Gives back memory and closes the file. Idempotent; pending write()/read() reject. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const s of this.#segments) if ('mem' in s) this.#options.budget.give(s.mem.length);
    this.#segments.length = 0;
    this.#memoryHeld = 0;
    this.#notify();
    const file = this.#file ?? (await this.#fileOpening?.catch(() => null)) ?? null;
    this.#file = null;
    await file?.close().catch(() => undefined); // closing an unlinked file cannot lose data
  }

  async #readFile(segment: { start: number; end: number }): Promise<Buffer> {
    const file = this.#file ?? (await this.#openFile());
    const length = Math.min(FILE_READ_BYTES, segment.end - segment.start);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    try {
      while (got < length) {
        const r = await file.read(buf, got, length - got, segment.start + got);
        if (r.bytesRead === 0) throw new Error('temp file shorter than written');
        got += r.bytesRead;
      }
    } catch (err) {
      throw this.#fail(err);
    }
    this.#checkAlive();
    segment.start += length;
    this.#fileUnread -= length;
    if (segment.start === segment.end) this.#segments.shift();
    this.#notify();
    return buf;
  }

  #openFile(): Promise<FileHandle> {
    if (this.#file !== null) return Promise.resolve(this.#file);
    this.#fileOpening ??= (async () => {
      const dir = this.#options.tempDir === '' ? tmpdir() : this.#options.tempDir;
      const path = join(dir, `askr-spool-${randomBytes(8).toString('hex')}`);
      let file: FileHandle;
      try {
        file = await open(path, 'wx+', 0o600);
        // Unlinked at once: the open handle keeps the bytes, nothing is left behind.
        await unlink(path);
      } catch (err) {
        throw this.#fail(err);
      }
      this.#options.onTempFile?.();
      if (this.#destroyed) {
        await file.close();
        throw this.#destroyedError();
      }
      this.#file = file;
      return file;
    })();
    return this.#fileOpening;
  }

  #pushMemory(chunk: Buffer): void {
    this.#memoryHeld += chunk.length;
    // A small view into a big socket read buffer would keep the whole buffer alive while we
    // count only the view: copy it, so what the budget counts is what is held.
    const held = chunk.byteLength * 2 < chunk.buffer.byteLength ? Buffer.from(chunk) : chunk;
    this.#segments.push({ mem: held });
    this.#notify();
  }

  #fail(err: unknown): SidecarError {
    const error =
      err instanceof SidecarError
        ? err
        : new SidecarError(ErrorCodes.TEMP_FILE, `buffer temp file failed: ${String(err)}`, {
            cause: err,
          });
    this.#error ??= error;
    this.#notify();
    return error;
  }

  #checkAlive(): void {
    if (this.#destroyed) throw this.#destroyedError();
  }

  #destroyedError(): SidecarError {
    return new SidecarError(ErrorCodes.TEMP_FILE, 'buffer released');
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Waits until `ready()` holds (re-checked on every change). One waiter per side at a time. */
  async #waitFor(ready: () => boolean): Promise<void> {
    while (!ready()) {
      this.#checkAlive();
      if (this.#error !== null) throw this.#error;
      const previous = this.#wake;
      await new Promise<void>((resolve) => {
        this.#wake = () => {
          previous?.();
          resolve();
        };
      });
    }
  }
}
