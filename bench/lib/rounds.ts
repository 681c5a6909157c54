/**
 * The order of a benchmark's rounds: each round rotates the list of servers (or modes, or pairs
 * of them) by one, so slow drift (thermal, neighbours) does not always hit the same one first.
 */

/** `list` rotated left by `by` (round r uses by = r - 1). */
export function rotate<T>(list: readonly T[], by: number): T[] {
  return list.map((_, i) => list[(i + by) % list.length] as T);
}
