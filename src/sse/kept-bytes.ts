/**
 * Bytes the hub keeps for minutes (the replay history: up to sse.history_size events per channel,
 * each with its data and its frames) live in allocations of their own. A small Buffer from
 * Buffer.from(), Buffer.concat() or allocUnsafe() is a slice of Buffer's shared pool (64 KiB slabs
 * on Node 24), and one kept slice keeps its whole slab alive, with whatever else was cut from it.
 * Issue 13: 200-byte events kept ~6.5 KiB each while other traffic shared their slabs (up to 64 KiB
 * each); with the data and the frames in allocations of their own, ~0.5 KiB.
 */

/** `size` bytes (uninitialized) that pin nothing else. */
export function keptAlloc(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size);
}

/**
 * `bytes`, unless it is a view into a larger allocation (a pool slab, a read buffer, a datagram
 * with its header), then a copy in an allocation of its own.
 */
export function ownBytes(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  const own = keptAlloc(bytes.length);
  bytes.copy(own);
  return own;
}
