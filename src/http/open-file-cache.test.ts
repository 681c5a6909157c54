// OpenFileCache with an injected clock (no timed assertions): within the validity an entry may be
// answered from memory; past it a changed, deleted or replaced (rename over) file is seen, never
// the old bytes. A recurrence looks like old bytes or a stale 'file' after `advance(validMs)`.
import { mkdtemp, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OpenFileCache, type FileBytes, type OpenFileCacheOptions } from './open-file-cache.ts';

const VALID_MS = 1000;
let dir: string;
let clock: number;
const caches: OpenFileCache[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'askr-ofc-'));
  clock = 0;
});
afterEach(async () => {
  for (const c of caches.splice(0)) c.close();
  await rm(dir, { recursive: true, force: true });
});

function cache(options: Partial<OpenFileCacheOptions> = {}): OpenFileCache {
  const c = new OpenFileCache({
    validMs: VALID_MS,
    maxEntries: 100,
    maxBytes: 1 << 20,
    maxFileBytes: 64 * 1024,
    errors: true,
    watch: false,
    now: () => clock,
    ...options,
  });
  caches.push(c);
  return c;
}

function text(found: ReturnType<OpenFileCache['read']>): string {
  expect(found).not.toBeNull();
  expect(found).not.toHaveProperty('kind');
  return (found as FileBytes).body.toString();
}

describe('OpenFileCache', () => {
  it('answers from memory within the validity and sees a rewrite (same size, same mtime) after it', async () => {
    const path = join(dir, 'a.txt');
    await writeFile(path, 'one');
    await utimes(path, 1_700_000_000, 1_700_000_000);
    const c = cache();
    expect(text(c.read(path))).toBe('one');
    await writeFile(path, 'two');
    // Same size and mtime on purpose: only ctime tells the rewrite apart.
    await utimes(path, 1_700_000_000, 1_700_000_000);
    clock += VALID_MS - 1;
    expect(text(c.read(path))).toBe('one'); // may be cached: it is, with this clock
    expect(c.stats().reads).toBe(1);
    clock += 1;
    expect(text(c.read(path))).toBe('two');
  });

  it('keeps the bytes across a revalidation only for a file that was not racily new', async () => {
    const path = join(dir, 'a.txt');
    await writeFile(path, 'same');
    let wall = Date.now();
    const c = cache({ wallNow: () => wall });
    c.read(path);
    clock += VALID_MS;
    c.read(path);
    // Read just after its change: re-read, since a same-tick rewrite would leave stat unchanged.
    expect(c.stats().reads).toBe(2);
    wall += 60_000;
    clock += VALID_MS;
    c.read(path); // re-read once more (the racy bytes were dropped), now as settled
    clock += VALID_MS;
    expect(text(c.read(path))).toBe('same');
    expect(c.stats()).toMatchObject({ reads: 3, revalidations: 3 });
  });

  it('sees a deleted file as ENOENT after the validity', async () => {
    const path = join(dir, 'gone.txt');
    await writeFile(path, 'x');
    const c = cache();
    text(c.read(path));
    await unlink(path);
    clock += VALID_MS;
    expect(c.read(path)).toEqual({ kind: 'error', code: 'ENOENT' });
    expect(c.lookup(path)).toEqual({ kind: 'error', code: 'ENOENT' });
  });

  it('sees a file replaced by rename (deploy style) after the validity', async () => {
    const path = join(dir, 'app.js');
    await writeFile(path, 'old();');
    const c = cache();
    expect(text(c.read(path))).toBe('old();');
    await writeFile(join(dir, 'app.js.tmp'), 'new();');
    await rename(join(dir, 'app.js.tmp'), path);
    clock += VALID_MS;
    expect(text(c.read(path))).toBe('new();');
  });

  it('caches a miss (open_file_cache_errors) for the validity only', async () => {
    const path = join(dir, 'late.txt');
    const c = cache();
    expect(c.lookup(path)).toEqual({ kind: 'error', code: 'ENOENT' });
    await writeFile(path, 'here');
    expect(c.lookup(path)).toEqual({ kind: 'error', code: 'ENOENT' }); // may be cached
    clock += VALID_MS;
    expect(c.lookup(path)).toMatchObject({ kind: 'file', real: path });
    expect(text(c.read(path))).toBe('here');
  });

  it('does not cache misses with errors off', async () => {
    const path = join(dir, 'late.txt');
    const c = cache({ errors: false });
    expect(c.lookup(path)).toEqual({ kind: 'error', code: 'ENOENT' });
    await writeFile(path, 'here');
    expect(c.lookup(path)).toMatchObject({ kind: 'file' });
  });

  it('checks on every call with a validity of 0', async () => {
    const path = join(dir, 'a.txt');
    await writeFile(path, '1');
    const c = cache({ validMs: 0 });
    expect(text(c.read(path))).toBe('1');
    await writeFile(path, '22');
    expect(text(c.read(path))).toBe('22');
    await unlink(path);
    expect(c.read(path)).toEqual({ kind: 'error', code: 'ENOENT' });
  });

  it('reports directories and leaves large files to the caller (null)', async () => {
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(2048));
    const c = cache({ maxFileBytes: 1024 });
    expect(c.read(join(dir, 'big.bin'))).toBeNull();
    expect(c.read(dir)).toMatchObject({ kind: 'dir' });
    expect(c.stats().bytes).toBe(0);
  });

  it('stays within maxEntries and maxBytes, least recently used first', async () => {
    for (const name of ['a', 'b', 'c']) await writeFile(join(dir, name), name.repeat(100));
    const c = cache({ maxEntries: 2, maxBytes: 250 });
    c.read(join(dir, 'a'));
    c.read(join(dir, 'b'));
    c.read(join(dir, 'a')); // a is now the most recent
    c.read(join(dir, 'c')); // b goes (count), then bytes 200 fit
    expect(c.stats()).toMatchObject({ entries: 2, bytes: 200, evictions: 1 });
    const before = c.stats().misses;
    c.read(join(dir, 'a'));
    expect(c.stats().misses).toBe(before);
    c.read(join(dir, 'b')); // c goes (count)
    expect(c.stats().misses).toBe(before + 1);
    expect(c.stats()).toMatchObject({ entries: 2, bytes: 200 });
  });

  it('drops bodies, not lookups, to stay within maxBytes', async () => {
    for (const name of ['a', 'b']) await writeFile(join(dir, name), name.repeat(100));
    const c = cache({ maxBytes: 150 });
    expect(text(c.read(join(dir, 'a')))).toBe('a'.repeat(100));
    expect(text(c.read(join(dir, 'b')))).toBe('b'.repeat(100)); // a's bytes go
    expect(c.stats()).toMatchObject({ entries: 2, bytes: 100, reads: 2 });
    expect(text(c.read(join(dir, 'a')))).toBe('a'.repeat(100));
    expect(c.stats()).toMatchObject({ entries: 2, bytes: 100, reads: 3, misses: 2 });
  });

  it('resolves symlinks (realpath) and sees a retargeted link after the validity', async () => {
    const { symlink } = await import('node:fs/promises');
    await writeFile(join(dir, 'v1.css'), 'v1');
    await writeFile(join(dir, 'v2.css'), 'v2');
    await symlink('v1.css', join(dir, 'cur.css'));
    const c = cache();
    expect(c.lookup(join(dir, 'cur.css'))).toMatchObject({ real: join(dir, 'v1.css') });
    expect(text(c.read(join(dir, 'cur.css')))).toBe('v1');
    await unlink(join(dir, 'cur.css'));
    await symlink('v2.css', join(dir, 'cur.css'));
    clock += VALID_MS;
    expect(c.lookup(join(dir, 'cur.css'))).toMatchObject({ real: join(dir, 'v2.css') });
    expect(text(c.read(join(dir, 'cur.css')))).toBe('v2');
  });

  it('drops an entry early when fs.watch reports a change in its directory', async () => {
    const path = join(dir, 'w.txt');
    await writeFile(path, 'before');
    const c = cache({ watch: true, validMs: 3_600_000 });
    expect(text(c.read(path))).toBe('before');
    await writeFile(path, 'after!');
    // inotify delivers asynchronously: wait for the event, never for a fixed time.
    await vi.waitFor(() => expect(c.stats().watchInvalidations).toBeGreaterThan(0));
    expect(text(c.read(path))).toBe('after!');
  });
});
