/**
 * static.open_file_cache against the real sidecar: a changed, deleted or replaced (rename over)
 * file is never served stale beyond static.open_file_cache_valid, and validators, ranges, 304s and
 * precompressed siblings stay consistent with the cached bytes. No timed assertions: a validity of
 * 0 must show every change at once; a long one may show old or new, never a mix. A recurrence
 * looks like old bytes after the change with a validity of 0, or an ETag not matching the body.
 */
import { mkdtemp, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSidecar, type TestSidecar } from './helpers/sidecar.ts';

let root: string;
let strict: TestSidecar; // open_file_cache_valid = 0: every request checks the file
let lasting: TestSidecar; // open_file_cache_valid = 1h: answers may come from memory
let off: TestSidecar;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'askr-static-cache-'));
  strict = await startTestSidecar({
    'server.root': root,
    'static.open_file_cache_valid': '0s',
  });
  lasting = await startTestSidecar({
    'server.root': root,
    'static.open_file_cache_valid': '1h',
  });
  off = await startTestSidecar({ 'server.root': root, 'static.open_file_cache': 'false' });
});
afterAll(async () => {
  await Promise.all([strict.close(), lasting.close(), off.close()]);
  await rm(root, { recursive: true, force: true });
});

async function get(
  base: TestSidecar,
  path: string,
  headers: Record<string, string> = {},
): Promise<{
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}> {
  const res = await request(`${base.url}${path}`, { headers });
  return {
    status: res.statusCode,
    body: Buffer.from(await res.body.arrayBuffer()),
    headers: res.headers,
  };
}

/** nginx's ETag is "<mtime hex>-<size hex>": its size must be the size of the bytes sent. */
function etagSize(etag: unknown): number {
  return parseInt(String(etag).split('-')[1] ?? '', 16);
}

describe('static.open_file_cache_valid = 0', () => {
  it('serves a rewrite at once, even one keeping size and mtime', async () => {
    const file = join(root, 'same.txt');
    await writeFile(file, 'aaaa');
    await utimes(file, 1_700_000_000, 1_700_000_000);
    expect((await get(strict, '/same.txt')).body.toString()).toBe('aaaa');
    await writeFile(file, 'bbbb');
    await utimes(file, 1_700_000_000, 1_700_000_000);
    expect((await get(strict, '/same.txt')).body.toString()).toBe('bbbb');
  });

  it('answers 404 once the file is deleted', async () => {
    await writeFile(join(root, 'gone.css'), 'x{}');
    expect((await get(strict, '/gone.css')).status).toBe(200);
    await unlink(join(root, 'gone.css'));
    expect((await get(strict, '/gone.css')).status).toBe(404);
  });

  it('serves the new file after a rename over it (atomic deploy)', async () => {
    await writeFile(join(root, 'app.js'), 'old();');
    expect((await get(strict, '/app.js')).body.toString()).toBe('old();');
    await writeFile(join(root, 'app.js.new'), 'brand new();');
    await rename(join(root, 'app.js.new'), join(root, 'app.js'));
    const r = await get(strict, '/app.js');
    expect(r.body.toString()).toBe('brand new();');
    expect(etagSize(r.headers['etag'])).toBe(r.body.length);
  });

  it('serves a file created after a miss was cached', async () => {
    expect((await get(strict, '/late.css')).status).toBe(404);
    await writeFile(join(root, 'late.css'), 'late{}');
    expect((await get(strict, '/late.css')).body.toString()).toBe('late{}');
  });

  it('answers 304 for the cached validators and 200 with new ones after a change', async () => {
    const file = join(root, 'cond.txt');
    await writeFile(file, 'v1');
    await utimes(file, 1_700_000_000, 1_700_000_000);
    const first = await get(strict, '/cond.txt');
    const etag = String(first.headers['etag']);
    expect((await get(strict, '/cond.txt', { 'if-none-match': etag })).status).toBe(304);
    await writeFile(file, 'v2 longer');
    const changed = await get(strict, '/cond.txt', { 'if-none-match': etag });
    expect(changed.status).toBe(200);
    expect(changed.body.toString()).toBe('v2 longer');
    expect(changed.headers['etag']).not.toBe(etag);
  });

  it('serves ranges of a cached file and HEAD without a body', async () => {
    await writeFile(join(root, 'digits.txt'), '0123456789');
    await get(strict, '/digits.txt'); // cached
    const r = await get(strict, '/digits.txt', { range: 'bytes=2-4' });
    expect(r.status).toBe(206);
    expect(r.body.toString()).toBe('234');
    expect(r.headers['content-range']).toBe('bytes 2-4/10');
    const head = await request(`${strict.url}/digits.txt`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe('10');
    expect((await head.body.arrayBuffer()).byteLength).toBe(0);
  });

  it('picks up a precompressed sibling added later and drops one removed', async () => {
    const css = 'body { color: blue }\n'.repeat(20);
    await writeFile(join(root, 'site.css'), css);
    const plain = await get(strict, '/site.css', { 'accept-encoding': 'gzip' });
    expect(plain.headers['content-encoding']).toBeUndefined();
    await writeFile(join(root, 'site.css.gz'), gzipSync(css));
    const gz = await get(strict, '/site.css', { 'accept-encoding': 'gzip' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.body.equals(gzipSync(css))).toBe(true);
    await unlink(join(root, 'site.css.gz'));
    const again = await get(strict, '/site.css', { 'accept-encoding': 'gzip' });
    expect(again.headers['content-encoding']).toBeUndefined();
    expect(again.body.toString()).toBe(css);
  });
});

describe('static.open_file_cache_valid = 1h', () => {
  it('may answer from memory, but the validators always describe the bytes sent', async () => {
    const file = join(root, 'long.txt');
    await writeFile(file, 'first');
    expect((await get(lasting, '/long.txt')).body.toString()).toBe('first');
    await writeFile(file, 'second, longer');
    const r = await get(lasting, '/long.txt');
    expect(['first', 'second, longer']).toContain(r.body.toString());
    expect(etagSize(r.headers['etag'])).toBe(r.body.length);
    expect(Number(r.headers['content-length'])).toBe(r.body.length);
  });

  it('serves large files by streaming them under their current stat', async () => {
    const big = Buffer.alloc(200 * 1024, 7);
    await writeFile(join(root, 'big.bin'), big);
    const r = await get(lasting, '/big.bin');
    expect(r.status).toBe(200);
    expect(r.body.equals(big)).toBe(true);
  });
});

describe('static.open_file_cache = false', () => {
  it('reads the file system on every request', async () => {
    await writeFile(join(root, 'nocache.txt'), 'one');
    expect((await get(off, '/nocache.txt')).body.toString()).toBe('one');
    await writeFile(join(root, 'nocache.txt'), 'two');
    expect((await get(off, '/nocache.txt')).body.toString()).toBe('two');
  });
});

describe('askr_static_file_cache_* metrics', () => {
  it('count hits and misses and report the entries and bytes held', async () => {
    const withMetrics = await startTestSidecar({
      'server.root': root,
      'static.open_file_cache_valid': '1h',
      'metrics.enabled': 'true',
      'metrics.listen': '127.0.0.1:0',
    });
    try {
      const scrape = async (): Promise<string> =>
        (await request(`${withMetrics.adminUrl ?? ''}/metrics`)).body.text();
      const value = (text: string, series: string): number => {
        const line = text.split('\n').find((l) => l.startsWith(series + ' '));
        return line === undefined ? 0 : Number(line.slice(series.length + 1));
      };
      await writeFile(join(root, 'metered.txt'), 'twelve bytes');
      const before = await scrape();
      for (let i = 0; i < 3; i++) {
        expect((await get(withMetrics, '/metered.txt')).body.toString()).toBe('twelve bytes');
      }
      const after = await scrape();
      const hit = 'askr_static_file_cache_events_total{event="hit"}';
      const miss = 'askr_static_file_cache_events_total{event="miss"}';
      // The first request misses (the route lookup), the two others are answered from memory.
      expect(value(after, miss) - value(before, miss)).toBeGreaterThanOrEqual(1);
      expect(value(after, hit) - value(before, hit)).toBeGreaterThanOrEqual(2);
      expect(value(after, 'askr_static_file_cache_entries')).toBeGreaterThanOrEqual(1);
      expect(value(after, 'askr_static_file_cache_bytes')).toBeGreaterThanOrEqual(12);
    } finally {
      await withMetrics.close();
    }
  });
});
