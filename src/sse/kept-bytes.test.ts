// kept-bytes: what the history keeps owns its allocation (issue 13: a kept slice of Buffer's
// shared pool kept its whole slab alive). Node 24's Buffer.from() of a short string is such a
// slice, which the first test checks so that the others test what they say.
import { describe, expect, it } from 'vitest';
import { keptAlloc, ownBytes } from './kept-bytes.ts';

const owns = (b: Buffer): boolean => b.byteOffset === 0 && b.buffer.byteLength === b.length;

describe('ownBytes', () => {
  it('copies a slice of the shared pool into an allocation of its own', () => {
    const pooled = Buffer.from('{"event":"shipped"}');
    expect(owns(pooled)).toBe(false);
    const own = ownBytes(pooled);
    expect(owns(own)).toBe(true);
    expect(own.equals(pooled)).toBe(true);
    pooled.fill(0); // the copy does not share the bytes
    expect(own.toString()).toBe('{"event":"shipped"}');
  });

  it('copies a view into a larger buffer (a datagram after its header)', () => {
    const datagram = keptAlloc(64);
    datagram.fill(0x61);
    const data = datagram.subarray(10, 20);
    const own = ownBytes(data);
    expect(owns(own)).toBe(true);
    expect(own.equals(data)).toBe(true);
  });

  it('returns a buffer that already owns its allocation as it is', () => {
    const own = keptAlloc(16);
    expect(ownBytes(own)).toBe(own);
  });

  it('keeps an empty buffer empty', () => {
    expect(ownBytes(Buffer.alloc(0)).length).toBe(0);
  });
});

describe('keptAlloc', () => {
  it('allocates exactly the size asked, pinning nothing else', () => {
    expect(owns(keptAlloc(100))).toBe(true);
  });
});
