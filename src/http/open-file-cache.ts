/**
 * An open-file cache in the spirit of nginx's `open_file_cache`: per path, the result of stat +
 * realpath (negative results too) and, for small regular files, their bytes. Bounded by entry
 * count and total body bytes (LRU); fs.watch on the entries' directories drops them early.
 * Invariants: an entry is trusted for at most `validMs` after it was last checked against the
 * file system, so a changed, deleted or replaced file is never served stale for longer; cached
 * bytes are only kept across a revalidation when the file's identity (dev, ino, size, mtime, ctime)
 * is unchanged and was old enough at read time that a same-second rewrite cannot hide behind
 * coarse timestamps ("racy git": see RACY_MS).
 */
import type { FSWatcher, Stats } from 'node:fs';
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  realpathSync,
  statSync,
  watch,
} from 'node:fs';
import { dirname } from 'node:path';
import { ErrorCodes, SidecarError } from '../errors.ts';

export interface OpenFileCacheOptions {
  /** How long an entry is trusted before it is checked again (static.open_file_cache_valid). */
  validMs: number;
  /** Most entries kept (static.open_file_cache_max). */
  maxEntries: number;
  /** Most file bytes kept in memory over all entries (static.open_file_cache_max_bytes). */
  maxBytes: number;
  /** Largest file whose bytes are kept (static.open_file_cache_file_max). */
  maxFileBytes: number;
  /** Also cache "not there" / "not allowed" answers (static.open_file_cache_errors). */
  errors: boolean;
  /** Watch the directories of cached entries and drop them on any change (Linux inotify). */
  watch: boolean;
  /** Monotonic clock in ms; injectable for tests. */
  now?: () => number;
  /** Wall clock in ms since the epoch, compared with file timestamps (RACY_MS); for tests. */
  wallNow?: () => number;
}

/** What a path is, as stat (following symlinks) and realpath say. */
export type PathInfo =
  { kind: 'file' | 'dir' | 'other'; stat: Stats; real: string } | { kind: 'error'; code: string };

/** A small regular file with the bytes that go with exactly this stat. */
export interface FileBytes {
  stat: Stats;
  real: string;
  body: Buffer;
}

/** Counters for tests and metrics. */
export interface OpenFileCacheStats {
  hits: number;
  misses: number;
  revalidations: number;
  /** Body reads (open + fstat + read + close). */
  reads: number;
  evictions: number;
  /** Entries dropped by fs.watch events. */
  watchInvalidations: number;
  /** fs.watch calls that failed (inotify limit): those entries rely on validMs alone. */
  watchFailures: number;
  entries: number;
  bytes: number;
}

/**
 * Errors that are an answer about the path rather than a failure (nginx caches the same with
 * open_file_cache_errors): the path is not there, or not reachable.
 */
const ANSWER_CODES: ReadonlySet<string> = new Set([
  'ENOENT',
  'ENOTDIR',
  'ELOOP',
  'ENAMETOOLONG',
  'EACCES',
  'EPERM',
]);

/**
 * Linux file timestamps come from a coarse clock (a few ms) and some file systems store whole
 * seconds (2 s on FAT): two writes of the same size inside one tick leave stat unchanged. Bytes
 * read from a file changed less than this long before are re-read at every revalidation instead
 * of being kept on an unchanged stat (git's "racily clean" rule).
 */
const RACY_MS = 3000;

// As in static-files.ts: a FIFO swapped in must not block a read.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

interface Entry {
  key: string;
  info: PathInfo;
  /** Clock (options.now) at the last check against the file system. */
  checkedAt: number;
  body: Buffer | null;
  /** The body was read when the file had just changed: never keep it across a revalidation. */
  racy: boolean;
  dirs: string[];
}

/**
 * The cache. Synchronous on purpose, like the route resolver's lookups: a local stat is a few
 * microseconds, a threadpool round trip several times that. Throws (SidecarError
 * ASKR_ERR_STATIC_FILE with the system error as cause) only on unexpected failures (EIO, EMFILE),
 * which are never cached.
 */
export class OpenFileCache {
  readonly #options: Required<OpenFileCacheOptions>;
  /** Insertion order is recency order: a hit re-inserts its entry at the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #watchers = new Map<string, { watcher: FSWatcher; keys: Set<string> }>();
  #bytes = 0;
  #closed = false;
  readonly #counters = {
    hits: 0,
    misses: 0,
    revalidations: 0,
    reads: 0,
    evictions: 0,
    watchInvalidations: 0,
    watchFailures: 0,
  };

  constructor(options: OpenFileCacheOptions) {
    this.#options = { now: () => performance.now(), wallNow: Date.now, ...options };
  }

  /** stat + realpath of `path`, from the cache when checked less than validMs ago. */
  lookup(path: string): PathInfo {
    return this.#entry(path).info;
  }

  /**
   * The bytes of `path` when it is a regular file of at most maxFileBytes; null when it is larger
   * (stream it instead); the PathInfo otherwise (an error, a directory...). The stat returned is
   * the one the bytes were read under (fstat of the descriptor they came from).
   */
  read(path: string): FileBytes | PathInfo | null {
    const entry = this.#entry(path);
    const info = entry.info;
    if (info.kind !== 'file') return info;
    if (info.stat.size > this.#options.maxFileBytes) return null;
    if (entry.body !== null) return { stat: info.stat, real: info.real, body: entry.body };
    return this.#fill(entry, info.real);
  }

  /** Drops every entry (and watcher). */
  clear(): void {
    for (const key of [...this.#entries.keys()]) this.#drop(key);
  }

  /** Releases the watchers; the cache then only answers from the file system. */
  close(): void {
    this.clear();
    this.#closed = true;
  }

  stats(): OpenFileCacheStats {
    return { ...this.#counters, entries: this.#entries.size, bytes: this.#bytes };
  }

  #entry(path: string): Entry {
    const now = this.#options.now();
    const cached = this.#entries.get(path);
    if (cached !== undefined) {
      if (now - cached.checkedAt < this.#options.validMs) {
        this.#counters.hits++;
        // Most recently used goes last.
        this.#entries.delete(path);
        this.#entries.set(path, cached);
        return cached;
      }
      this.#counters.revalidations++;
      const info = probe(path);
      if (sameFile(cached.info, info)) {
        cached.checkedAt = now;
        cached.info = info;
        // Bytes read while the file was racily new may differ from what is there now.
        if (cached.racy) this.#setBody(cached, null, false);
        this.#entries.delete(path);
        this.#entries.set(path, cached);
        return cached;
      }
      // Changed, gone or replaced: a fresh entry (its realpath, hence its watches, may differ).
      this.#drop(path);
      return this.#insert(path, info, now);
    }
    this.#counters.misses++;
    return this.#insert(path, probe(path), now);
  }

  #insert(path: string, info: PathInfo, now: number): Entry {
    const entry: Entry = { key: path, info, checkedAt: now, body: null, racy: false, dirs: [] };
    if (this.#keep(info) && this.#options.maxEntries > 0 && !this.#closed) {
      this.#entries.set(path, entry);
      this.#watch(entry);
      this.#evict();
    }
    return entry;
  }

  #keep(info: PathInfo): boolean {
    return info.kind !== 'error' || this.#options.errors;
  }

  /** Reads the file's bytes under its current fstat; the entry's info follows what was read. */
  #fill(entry: Entry, real: string): FileBytes | PathInfo | null {
    this.#counters.reads++;
    let fd: number;
    try {
      fd = openSync(entry.key, OPEN_FLAGS);
    } catch (err) {
      const code = errnoCode(err);
      if (code !== undefined && ANSWER_CODES.has(code)) {
        entry.info = { kind: 'error', code };
        return entry.info;
      }
      throw fileError('open', entry.key, err);
    }
    try {
      const before = fstatSync(fd);
      if (!before.isFile()) {
        entry.info = { kind: 'other', stat: before, real };
        return entry.info;
      }
      if (before.size > this.#options.maxFileBytes) {
        entry.info = { kind: 'file', stat: before, real };
        return null;
      }
      const body = Buffer.allocUnsafe(before.size);
      let read = 0;
      while (read < body.length) {
        const n = readSync(fd, body, read, body.length - read, read);
        if (n === 0) break;
        read += n;
      }
      const after = fstatSync(fd);
      entry.info = { kind: 'file', stat: after, real };
      // Written while we read: keep nothing, the caller streams under the fresh stat.
      if (read !== before.size || !sameStat(before, after)) return null;
      const changedMs = Math.max(after.mtimeMs, after.ctimeMs);
      const racy = this.#options.wallNow() - changedMs < RACY_MS;
      // Not kept (cache closed, misses only, or larger than maxBytes): the bytes serve this request.
      if (this.#entries.get(entry.key) === entry && body.length <= this.#options.maxBytes) {
        this.#setBody(entry, body, racy);
        this.#evict();
      }
      return { stat: after, real, body };
    } catch (err) {
      throw fileError('read', entry.key, err);
    } finally {
      closeSync(fd);
    }
  }

  #setBody(entry: Entry, body: Buffer | null, racy: boolean): void {
    this.#bytes += (body?.length ?? 0) - (entry.body?.length ?? 0);
    entry.body = body;
    entry.racy = racy;
  }

  /** Least recently used first: whole entries over maxEntries, then bodies over maxBytes. */
  #evict(): void {
    const { maxEntries, maxBytes } = this.#options;
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= maxEntries) break;
      this.#counters.evictions++;
      this.#drop(key);
    }
    for (const entry of this.#entries.values()) {
      if (this.#bytes <= maxBytes) break;
      if (entry.body === null) continue;
      this.#counters.evictions++;
      this.#setBody(entry, null, false);
    }
  }

  #drop(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#setBody(entry, null, false);
    this.#entries.delete(key);
    for (const dir of entry.dirs) {
      const w = this.#watchers.get(dir);
      if (w === undefined) continue;
      w.keys.delete(key);
      if (w.keys.size === 0) {
        w.watcher.close();
        this.#watchers.delete(dir);
      }
    }
  }

  /**
   * Early invalidation: the directory holding the path, and the one holding its realpath when
   * that differs (a symlinked file), are watched; any event there drops all their entries. A
   * missed or late event only costs freshness up to validMs, never correctness.
   */
  #watch(entry: Entry): void {
    // Misses are not watched: front-controller URLs name directories that mostly do not exist, and
    // a failing fs.watch per miss would cost more than the stat it saves. They expire by validMs.
    if (!this.#options.watch || entry.info.kind === 'error') return;
    const dirs = new Set([dirname(entry.key), dirname(entry.info.real)]);
    for (const dir of dirs) {
      let w = this.#watchers.get(dir);
      if (w === undefined) {
        let watcher: FSWatcher;
        try {
          watcher = watch(dir, { persistent: false }, () => this.#invalidateDir(dir));
        } catch {
          // The inotify limit (ENOSPC) or a directory just removed: counted, and the entry still
          // expires after validMs.
          this.#counters.watchFailures++;
          continue;
        }
        watcher.on('error', () => {
          this.#counters.watchFailures++;
          this.#invalidateDir(dir);
        });
        w = { watcher, keys: new Set() };
        this.#watchers.set(dir, w);
      }
      w.keys.add(entry.key);
      entry.dirs.push(dir);
    }
  }

  #invalidateDir(dir: string): void {
    const w = this.#watchers.get(dir);
    if (w === undefined) return;
    for (const key of [...w.keys]) {
      this.#counters.watchInvalidations++;
      this.#drop(key);
    }
  }
}

/** stat (following symlinks) then realpath; answer errors become an 'error' PathInfo. */
function probe(path: string): PathInfo {
  try {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined) return { kind: 'error', code: 'ENOENT' };
    const real = realpathSync.native(path);
    const kind = stat.isFile() ? 'file' : stat.isDirectory() ? 'dir' : 'other';
    return { kind, stat, real };
  } catch (err) {
    const code = errnoCode(err);
    if (code !== undefined && ANSWER_CODES.has(code)) return { kind: 'error', code };
    throw fileError('stat', path, err);
  }
}

function sameFile(a: PathInfo, b: PathInfo): boolean {
  if (a.kind === 'error' || b.kind === 'error') {
    return a.kind === 'error' && b.kind === 'error' && a.code === b.code;
  }
  return a.kind === b.kind && a.real === b.real && sameStat(a.stat, b.stat);
}

/** Identity and content markers: a rename over, a rewrite or a truncation changes one of them. */
function sameStat(a: Stats, b: Stats): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs
  );
}

function fileError(op: string, path: string, cause: unknown): SidecarError {
  return new SidecarError(ErrorCodes.STATIC_FILE, `static file ${op} failed: ${path}`, { cause });
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** The cache static.* asks for, or null when static.open_file_cache is off. */
export function openFileCacheFor(config: {
  static: {
    open_file_cache: boolean;
    open_file_cache_valid: number;
    open_file_cache_max: number;
    open_file_cache_max_bytes: number;
    open_file_cache_file_max: number;
    open_file_cache_errors: boolean;
  };
}): OpenFileCache | null {
  const s = config.static;
  if (!s.open_file_cache) return null;
  return new OpenFileCache({
    validMs: s.open_file_cache_valid,
    maxEntries: s.open_file_cache_max,
    maxBytes: s.open_file_cache_max_bytes,
    maxFileBytes: s.open_file_cache_file_max,
    errors: s.open_file_cache_errors,
    watch: true,
  });
}
