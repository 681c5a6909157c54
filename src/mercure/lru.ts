/**
 * A count-bounded least-recently-used map: the one home of the Mercure hub's caches (verified
 * tokens, compiled patterns, a pattern's evaluation results). A Map keeps insertion order, so a
 * hit is moved last and the first key is the least recently used.
 * Invariants: never more than `maxEntries` entries; a bound of 0 keeps nothing (every get misses).
 */

export class BoundedLru<K, V> {
  readonly #entries = new Map<K, V>();
  readonly #maxEntries: number;
  readonly #onEvict: (() => void) | undefined;

  /**
   * `maxEntries`: the most entries kept (0: none). `onEvict` is called once per entry pushed out by
   * the bound (not for delete() or clear()), to count it.
   */
  constructor(maxEntries: number, onEvict?: () => void) {
    this.#maxEntries = Math.max(0, Math.floor(maxEntries));
    this.#onEvict = onEvict;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The value of `key`, now the most recently used; undefined when absent. */
  get(key: K): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  /** Keeps `value` under `key` as the most recently used, evicting the least recently used. */
  set(key: K, value: V): void {
    if (this.#maxEntries === 0) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
      this.#onEvict?.();
    }
    this.#entries.set(key, value);
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}
