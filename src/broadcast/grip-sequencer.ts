/**
 * Pushpin's ordering of published items (its handler's Sequencer, src/handler/sequencer.cpp):
 * an item whose `id` was seen on its channel within the id cache TTL is a duplicate and dropped;
 * an item whose `prev-id` is not the channel's last sent id waits (at most `waitMs`) for the item
 * it follows, then goes out right after it; an item still waiting after `waitMs` goes out anyway.
 * Pure: the caller passes the time and publishes what comes back, in order.
 *
 *   add(item) ─▶ id seen? ─yes─▶ duplicate
 *                  └─▶ prev-id ≠ last id of channel? ─yes─▶ pending[channel][prev-id] (bounded)
 *                          └─no─▶ send ─▶ last id = item.id ─▶ pending[channel][item.id]? send it…
 *   expire(now) ─▶ oldest pending older than waitMs ─▶ send (and what waits on it)
 *
 * Invariants: every bound holds (ids and last ids by count, pending by count per channel and by
 * bytes); an item is returned at most once; items of one channel come back in the order they
 * must be published.
 */

/** What the sequencer needs of an item. */
export interface SequencedItem {
  readonly channel: string;
  readonly id: string | undefined;
  readonly prevId: string | undefined;
  /** Pushpin's no-seq: sent at once, the channel's last id untouched. */
  readonly noSeq: boolean;
  /** Bytes it holds while pending (its content). */
  readonly bytes: number;
}

export interface SequencerLimits {
  /** grip.message_wait, ms; 0 never holds an item. */
  waitMs: number;
  /** grip.id_cache_ttl, ms; 0 keeps no ids. */
  idCacheTtlMs: number;
  /** grip.max_pending_size, bytes of all pending items. */
  maxPendingBytes: number;
}

/** `sent`: in arrival order; `reordered`: after the item it follows arrived; `expired`: after
 * waitMs without it. */
export type SendOutcome = 'sent' | 'reordered' | 'expired';
/** What became of an added item. */
export type AddOutcome = 'sent' | 'pending' | 'duplicate' | 'dropped';

export interface Ready<T> {
  item: T;
  outcome: SendOutcome;
}

/** Items that may wait on one channel (Pushpin's CHANNEL_PENDING_MAX). */
export const CHANNEL_PENDING_MAX = 100;
/** Channels whose last id is remembered; the least recently published are forgotten first. */
const LAST_IDS_MAX = 100_000;
/** Ids remembered for deduplication; the oldest are forgotten first. */
const ID_CACHE_MAX = 100_000;

interface Pending<T> {
  readonly item: T;
  readonly at: number;
}

export class GripSequencer<T extends SequencedItem> {
  readonly #limits: () => SequencerLimits;
  /** channel -> id of the last item sent (absent: unknown, or the last item had no id). */
  readonly #lastIds = new Map<string, string>();
  /** key(channel, id) -> expiry time; insertion order is expiry order. */
  readonly #seenIds = new Map<string, number>();
  readonly #pendingByChannel = new Map<string, Map<string, Pending<T>>>();
  /** Every pending item, oldest first (arrival times only grow). */
  readonly #pendingByAge = new Set<Pending<T>>();
  #pendingBytes = 0;

  constructor(limits: () => SequencerLimits) {
    this.#limits = limits;
  }

  get pending(): number {
    return this.#pendingByAge.size;
  }

  /** When the oldest pending item is due (ms, the caller's clock), or undefined with none. */
  nextDue(): number | undefined {
    for (const p of this.#pendingByAge) return p.at + this.#limits().waitMs;
    return undefined;
  }

  /**
   * Takes one item at time `now`. `ready` lists what to publish now, in order: the item itself
   * when it is sent, then the items that were waiting for it.
   */
  add(item: T, now: number): { outcome: AddOutcome; ready: Array<Ready<T>> } {
    const { waitMs, idCacheTtlMs, maxPendingBytes } = this.#limits();
    if (item.id !== undefined && idCacheTtlMs > 0) {
      this.#forgetIds(now);
      const key = idKey(item.channel, item.id);
      if (this.#seenIds.has(key)) return { outcome: 'duplicate', ready: [] };
      this.#seenIds.set(key, now + idCacheTtlMs);
      if (this.#seenIds.size > ID_CACHE_MAX) this.#seenIds.delete(first(this.#seenIds.keys()));
    }
    if (item.noSeq) return { outcome: 'sent', ready: [{ item, outcome: 'sent' }] };
    const last = this.#lastIds.get(item.channel);
    if (waitMs > 0 && last !== undefined && item.prevId !== undefined && item.prevId !== last) {
      let waiting = this.#pendingByChannel.get(item.channel);
      // One item per prev-id, as Pushpin: a second one following the same item is dropped.
      if (waiting?.has(item.prevId) === true) return { outcome: 'dropped', ready: [] };
      if (
        (waiting?.size ?? 0) >= CHANNEL_PENDING_MAX ||
        this.#pendingBytes + item.bytes > maxPendingBytes
      ) {
        return { outcome: 'dropped', ready: [] };
      }
      if (waiting === undefined) {
        waiting = new Map();
        this.#pendingByChannel.set(item.channel, waiting);
      }
      const pending: Pending<T> = { item, at: now };
      waiting.set(item.prevId, pending);
      this.#pendingByAge.add(pending);
      this.#pendingBytes += item.bytes;
      return { outcome: 'pending', ready: [] };
    }
    const ready: Array<Ready<T>> = [];
    this.#send(item, 'sent', ready);
    return { outcome: 'sent', ready };
  }

  /** The pending items that waited waitMs by `now` (and what waits on them), in order. */
  expire(now: number): Array<Ready<T>> {
    const ready: Array<Ready<T>> = [];
    const { waitMs } = this.#limits();
    for (const p of this.#pendingByAge) {
      if (p.at + waitMs > now) break;
      // Items sent meanwhile (followers) left the set: a Set's iteration skips them.
      this.#unpend(p);
      this.#send(p.item, 'expired', ready);
    }
    return ready;
  }

  /** Sends `item`, then every pending item of its channel that follows it, one after another. */
  #send(item: T, outcome: SendOutcome, into: Array<Ready<T>>): void {
    let next: T | undefined = item;
    let how = outcome;
    while (next !== undefined) {
      into.push({ item: next, outcome: how });
      const channel: string = next.channel;
      const id: string | undefined = next.id;
      this.#lastIds.delete(channel);
      if (id === undefined) return; // nothing can name it as its prev-id
      this.#lastIds.set(channel, id);
      if (this.#lastIds.size > LAST_IDS_MAX) this.#lastIds.delete(first(this.#lastIds.keys()));
      const follower: Pending<T> | undefined = this.#pendingByChannel.get(channel)?.get(id);
      if (follower === undefined) return;
      this.#unpend(follower);
      next = follower.item;
      how = 'reordered';
    }
  }

  #unpend(p: Pending<T>): void {
    this.#pendingByAge.delete(p);
    this.#pendingBytes -= p.item.bytes;
    const waiting = this.#pendingByChannel.get(p.item.channel);
    if (waiting === undefined || p.item.prevId === undefined) return;
    waiting.delete(p.item.prevId);
    if (waiting.size === 0) this.#pendingByChannel.delete(p.item.channel);
  }

  #forgetIds(now: number): void {
    for (const [key, expiresAt] of this.#seenIds) {
      if (expiresAt > now) return;
      this.#seenIds.delete(key);
    }
  }
}

/** Unambiguous: a channel name holds no newline. */
function idKey(channel: string, id: string): string {
  return `${channel}\n${id}`;
}

function first(keys: Iterable<string>): string {
  for (const key of keys) return key;
  return '';
}
