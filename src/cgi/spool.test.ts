import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { MemoryBudget, Spool, type SpoolOptions } from './spool.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'askr-spool-test-'));
  dirs.push(d);
  return d;
}

function spool(options: Partial<SpoolOptions> = {}): { spool: Spool; budget: MemoryBudget } {
  const budget = options.budget ?? new MemoryBudget(1024 * 1024);
  return {
    budget,
    spool: new Spool({
      memoryBytes: 64,
      budget,
      tempDir: tempDir(),
      maxFileBytes: 1024 * 1024,
      ...options,
    }),
  };
}

async function drain(s: Spool): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let c = await s.read(); c !== null; c = await s.read()) parts.push(c);
  return Buffer.concat(parts);
}

/** Open descriptors of this process that point into `dir` (deleted files included). */
function fdsInto(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // the descriptor closed while we looked
    }
  }
  return out;
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 1) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('Spool', () => {
  it('small writes stay in memory and come back in order', async () => {
    const { spool: s, budget } = spool();
    await s.write(Buffer.from('ab'));
    await s.write(Buffer.from('cd'));
    s.end();
    expect(budget.usedBytes).toBe(4);
    expect((await drain(s)).toString()).toBe('abcd');
    expect(s.usedFile).toBe(false);
    expect(budget.usedBytes).toBe(0);
  });

  it('past memoryBytes the rest goes to an unlinked temp file; bytes come back exactly', async () => {
    const dir = tempDir();
    let files = 0;
    const { spool: s, budget } = spool({ tempDir: dir, onTempFile: () => (files += 1) });
    const chunks = [bytes(40, 1), bytes(40, 2), bytes(100_000, 3), bytes(10, 4)];
    for (const c of chunks) await s.write(c);
    s.end();
    expect(s.usedFile).toBe(true);
    expect(files).toBe(1);
    expect(readdirSync(dir)).toEqual([]); // unlinked at once: nothing on disk by name
    expect(budget.usedBytes).toBeLessThanOrEqual(64);
    expect((await drain(s)).equals(Buffer.concat(chunks))).toBe(true);
    await s.destroy();
    expect(fdsInto(dir)).toEqual([]);
  });

  it('a full shared budget sends bytes to the file even under memoryBytes', async () => {
    const budget = new MemoryBudget(10);
    const { spool: s } = spool({ budget, memoryBytes: 1000 });
    await s.write(bytes(8, 1));
    await s.write(bytes(8, 2)); // 16 > budget 10: file
    s.end();
    expect(s.usedFile).toBe(true);
    expect(budget.usedBytes).toBe(8);
    expect((await drain(s)).equals(Buffer.concat([bytes(8, 1), bytes(8, 2)]))).toBe(true);
    expect(budget.usedBytes).toBe(0);
  });

  it('with the file full, write() waits until the reader has taken bytes', async () => {
    const { spool: s } = spool({ memoryBytes: 1, maxFileBytes: 100 });
    await s.write(bytes(80, 1));
    let second = false;
    const pending = s.write(bytes(80, 2)).then(() => (second = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(second).toBe(false);
    const first = await s.read();
    expect(first?.equals(bytes(80, 1))).toBe(true);
    await pending;
    s.end();
    expect((await drain(s)).equals(bytes(80, 2))).toBe(true);
  });

  it('destroy() gives the memory back, closes the file and fails pending calls', async () => {
    const dir = tempDir();
    const { spool: s, budget } = spool({ tempDir: dir });
    await s.write(bytes(50, 1));
    await s.write(bytes(5000, 2));
    const reading = drain(s).catch((e: unknown) => e);
    await s.destroy();
    const outcome = await reading;
    expect((outcome as SidecarError).code).toBe(ErrorCodes.TEMP_FILE);
    expect(budget.usedBytes).toBe(0);
    expect(fdsInto(dir)).toEqual([]);
    const err = await s.write(Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe(ErrorCodes.TEMP_FILE);
  });

  it('abort() reaches the reader after the bytes written before it', async () => {
    const { spool: s } = spool();
    await s.write(Buffer.from('ok'));
    s.abort(new Error('FPM died'));
    expect((await s.read())?.toString()).toBe('ok');
    await expect(s.read()).rejects.toThrow('FPM died');
  });

  it('a temp dir that does not exist fails the write with TEMP_FILE, not a crash', async () => {
    const { spool: s } = spool({ tempDir: '/nonexistent/askr', memoryBytes: 1 });
    const err = await s.write(bytes(10, 1)).catch((e: unknown) => e);
    expect((err as SidecarError).code).toBe(ErrorCodes.TEMP_FILE);
    await s.destroy();
  });

  it('random chunk sizes and read pacing always reproduce the input (seeded)', async () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 20; round += 1) {
      const { spool: s } = spool({ memoryBytes: rand(2000) + 1, maxFileBytes: rand(5000) + 1 });
      const chunks = Array.from({ length: rand(30) + 1 }, (_, i) => bytes(rand(3000) + 1, i));
      const producing = (async () => {
        for (const c of chunks) await s.write(c);
        s.end();
      })();
      const out = await drain(s);
      await producing;
      expect(out.equals(Buffer.concat(chunks))).toBe(true);
      await s.destroy();
    }
  });
});
