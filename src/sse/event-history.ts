/**
 * Replay state of the hub: event ids, one bounded history per channel, and tombstones that
 * remember what a deleted channel had evicted. Invariants: entries are in ascending seq order;
 * `evictedMaxSeq` only grows; a replay writes one frame per (event, channel) in (seq, publish
 * rank) order, as live delivery does; a client is told askr:lost whenever a frame it never saw
 * may have been evicted (false positives are possible, e.g. after the tombstone TTL; false
 * negatives are not).
 */

/**
 * One published event as every door sees it: the channel histories it went to share it, and a
 * Mercure stream's frame is encoded from it once, on first use. Channels are topics (Mercure
 * topics and askr channels are one namespace).
 */
export interface EventRecord {
  readonly seq: number;
  readonly channels: readonly string[];
  readonly data: Buffer;
  readonly event: string | undefined;
  /** The publisher marked it private (Mercure `private`): askr streams get it on private-* /
   * presence-* channels only. */
  readonly privateField: boolean;
  /** Mercure readers need a subscribe grant: privateField, or a private-* / presence-* channel. */
  readonly private: boolean;
  /** The id a Mercure publisher chose; undefined: the hub's own (`urn:askr:<epoch>-<seq>`). */
  readonly mercureId: string | undefined;
  /** Mercure `retry` (ms), written as the frame's `retry:` field. */
  readonly retryMs: number | undefined;
  /** The publisher's socket id (toOthers, whisper): the stream with that id never gets it. */
  readonly socket?: string | undefined;
  /** GRIP http-stream content (a publish through Pushpin's API): a GRIP hold gets `data` as is. */
  readonly raw?: boolean;
  /** The Mercure encoding, made on first use and shared by every Mercure stream. */
  mercureFrame?: Buffer;
}

/** One stored event, already encoded for its channel (the bytes replay writes). */
export interface HistoryEntry {
  readonly seq: number;
  /** Publish time (hub clock, ms), for the age bound. */
  readonly time: number;
  readonly publisherId: string | undefined;
  /** Index of this channel in the publish's (deduplicated) channel list: the order in which the
   * frames of one event go out, live and in a replay. */
  readonly rank: number;
  readonly frame: Buffer;
  /** The event itself (absent for entries restored from a state file of an older version). */
  readonly record?: EventRecord;
}

/** `<epoch>-<seq>`: orders events across channels within one hub instance. */
export function formatEventId(epoch: string, seq: number): string {
  return `${epoch}-${seq}`;
}

const SEQ_RE = /^\d{1,15}$/;

/** A parsed event id. */
export interface ParsedEventId {
  epoch: string;
  seq: number;
  /** The channel tag (`@<channel>`): the frame of `seq` on that channel. Absent: the whole
   * event (askr:lost's ids, Mercure cursors). */
  channel?: string;
}

/**
 * Parses a Last-Event-ID: `<epoch>-<seq>` optionally followed by `@<channel>`. The FIRST '@'
 * separates (an epoch has none, channel names may: Pusher's charset); the epoch may itself
 * contain '-' (the last one before the '@' separates the seq). Returns null when malformed.
 */
export function parseEventId(value: string): ParsedEventId | null {
  const at = value.indexOf('@');
  const head = at === -1 ? value : value.slice(0, at);
  const dash = head.lastIndexOf('-');
  if (dash <= 0) return null;
  const digits = head.slice(dash + 1);
  if (!SEQ_RE.test(digits)) return null;
  const parsed: ParsedEventId = { epoch: head.slice(0, dash), seq: Number(digits) };
  if (at !== -1 && at + 1 < value.length) parsed.channel = value.slice(at + 1);
  return parsed;
}

/**
 * A channel's history: a queue bounded by count and age. The array is used as a deque with a
 * head index (compacted when half of it is dead) so eviction is O(1) amortized.
 */
export class EventHistory {
  #items: (HistoryEntry | undefined)[] = [];
  #head = 0;
  /** publisherId -> seq, only for entries still held (idempotent publish retries). */
  #byPublisherId: Map<string, number> | undefined;
  /** Highest seq ever evicted (or published while history was off) on this channel. */
  evictedMaxSeq: number;

  constructor(evictedMaxSeq = 0) {
    this.evictedMaxSeq = evictedMaxSeq;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Appends, evicting the oldest entries beyond `maxSize`; maxSize 0 keeps nothing. */
  push(entry: HistoryEntry, maxSize: number): void {
    if (maxSize <= 0) {
      this.evictedMaxSeq = Math.max(this.evictedMaxSeq, entry.seq);
      return;
    }
    this.trimTo(maxSize - 1);
    this.#items.push(entry);
    if (entry.publisherId !== undefined) {
      this.#byPublisherId ??= new Map();
      this.#byPublisherId.set(entry.publisherId, entry.seq);
    }
  }

  /** Evicts the oldest entries until at most `maxSize` remain. */
  trimTo(maxSize: number): void {
    while (this.size > Math.max(0, maxSize)) this.#evictOldest();
  }

  /** Evicts entries that are `maxAgeMs` old or older at `now`. */
  evictExpired(now: number, maxAgeMs: number): void {
    for (;;) {
      const oldest = this.#items[this.#head];
      if (oldest === undefined || now - oldest.time < maxAgeMs) return;
      this.#evictOldest();
    }
  }

  hasPublisherId(publisherId: string): boolean {
    return this.#byPublisherId?.has(publisherId) ?? false;
  }

  /** Entries with seq > `afterSeq`, oldest first. */
  since(afterSeq: number): HistoryEntry[] {
    return this.#items.slice(this.#firstAfter(afterSeq)) as HistoryEntry[];
  }

  /** The entry of event `seq`, if held. */
  at(seq: number): HistoryEntry | undefined {
    const entry = this.#items[this.#firstAfter(seq - 1)];
    return entry?.seq === seq ? entry : undefined;
  }

  /** Index of the first held entry with seq > `afterSeq` (binary search: entries are seq-ordered). */
  #firstAfter(afterSeq: number): number {
    let lo = this.#head;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#items[mid]?.seq ?? 0) <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #evictOldest(): void {
    const oldest = this.#items[this.#head];
    if (oldest === undefined) return;
    this.#items[this.#head] = undefined;
    this.#head++;
    this.evictedMaxSeq = Math.max(this.evictedMaxSeq, oldest.seq);
    if (
      oldest.publisherId !== undefined &&
      this.#byPublisherId?.get(oldest.publisherId) === oldest.seq
    ) {
      this.#byPublisherId.delete(oldest.publisherId);
    }
    if (this.#head === this.#items.length) {
      // Empty: drop the storage, an idle channel should cost nothing.
      this.#items = [];
      this.#head = 0;
      this.#byPublisherId = undefined;
    } else if (this.#head >= 32 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}

interface Tombstone {
  evictedMaxSeq: number;
  buriedAt: number;
}

/**
 * What deleted channels had evicted. A channel with no subscribers and an empty history is
 * deleted (so unused channel names cost no memory), but a client may come back with a
 * Last-Event-ID older than an event that channel evicted; the tombstone answers that for
 * `ttlMs`. Expired (or over `maxEntries`) tombstones fold into `floor`, a conservative bound
 * for every channel without state: any seq at or below it might have been lost.
 *
 * A client that reconnects within `ttlMs` of its disconnect always finds its channels' state or
 * tombstones (a channel it was subscribed to is deleted no earlier than that disconnect).
 */
export class ChannelTombstones {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  // Map iteration order is insertion order; bury() re-inserts, so the oldest come first.
  readonly #byChannel = new Map<string, Tombstone>();
  #floor = 0;

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#byChannel.size;
  }

  /** Highest evicted seq among forgotten channels. */
  get floor(): number {
    return this.#floor;
  }

  /** Records that `channel` (now without state) has evicted up to `evictedMaxSeq`. */
  bury(channel: string, evictedMaxSeq: number, now: number): void {
    const previous = this.#byChannel.get(channel);
    if (previous !== undefined) this.#byChannel.delete(channel);
    const seq = Math.max(evictedMaxSeq, previous?.evictedMaxSeq ?? 0);
    this.#byChannel.set(channel, { evictedMaxSeq: seq, buriedAt: now });
    if (this.#byChannel.size > this.#maxEntries) this.#foldOldest();
  }

  /** The evicted bound of a channel whose state is being re-created; removes its tombstone. */
  exhume(channel: string): number {
    const tomb = this.#byChannel.get(channel);
    if (tomb === undefined) return this.#floor;
    this.#byChannel.delete(channel);
    return tomb.evictedMaxSeq;
  }

  /** Every tombstone and the floor, for the state file (see hub-state.ts). */
  export(): { floor: number; channels: Array<[string, number, number]> } {
    return {
      floor: this.#floor,
      channels: [...this.#byChannel].map(([name, t]) => [name, t.evictedMaxSeq, t.buriedAt]),
    };
  }

  /** Restores what export() gave (oldest first); entries over the cap fold into the floor. */
  import(state: {
    floor: number;
    channels: ReadonlyArray<readonly [string, number, number]>;
  }): void {
    this.#floor = Math.max(this.#floor, state.floor);
    for (const [name, evictedMaxSeq, buriedAt] of state.channels) {
      this.#byChannel.set(name, { evictedMaxSeq, buriedAt });
      if (this.#byChannel.size > this.#maxEntries) this.#foldOldest();
    }
  }

  /** Folds tombstones older than the TTL into the floor. */
  expire(now: number): void {
    for (const tomb of this.#byChannel.values()) {
      if (now - tomb.buriedAt < this.#ttlMs) return;
      this.#foldOldest();
    }
  }

  #foldOldest(): void {
    for (const [channel, tomb] of this.#byChannel) {
      this.#floor = Math.max(this.#floor, tomb.evictedMaxSeq);
      this.#byChannel.delete(channel);
      return;
    }
  }
}

/** What a reconnecting stream gets: the frames to replay and whether a gap must be reported. */
export interface ReplayPlan {
  entries: HistoryEntry[];
  /** True when a frame after the cursor was evicted, or did not fit in `budgetBytes`. */
  tooOld: boolean;
}

/** One channel of the resuming stream and its history. */
export interface ReplaySource {
  readonly name: string;
  readonly history: EventHistory;
}

/**
 * Where a stream resumes: after the frame of event `seq` on the channel of publish rank `rank`.
 * Built by {@link replayCursor}.
 */
export interface ReplayCursor {
  readonly seq: number;
  /** Rank of the last frame of `seq` the client got: the frames of `seq` with a higher rank are
   * still due. Infinity: it got the whole event. -1: unknown (none of `seq`'s frames is held). */
  readonly rank: number;
  /** The channel the id named, if any. */
  readonly channel: string | undefined;
  /** The channels of `seq`'s publish, when a held entry tells them. */
  readonly channels: readonly string[] | undefined;
}

/**
 * The cursor for a resume from the frame of `seq` on `channel` (undefined: the whole event). The
 * channel's rank is its own entry's, else what the event's record in another source's history
 * says (its channel list, trusted only when it lists that source at the entry's rank and the
 * channel: a record rebuilt from one channel's shared history knows that channel alone); a
 * channel the event did not go to counts as the whole event.
 */
export function replayCursor(
  sources: readonly ReplaySource[],
  seq: number,
  channel: string | undefined,
): ReplayCursor {
  if (channel === undefined) return { seq, rank: Infinity, channel, channels: undefined };
  let rank: number | undefined;
  let channels: readonly string[] | undefined;
  for (const source of sources) {
    const entry = source.history.at(seq);
    if (entry === undefined) continue;
    if (source.name === channel) rank = entry.rank;
    const listed = entry.record?.channels;
    if (channels === undefined && listed?.[entry.rank] === source.name) {
      const index = listed.indexOf(channel);
      if (index !== -1) channels = listed;
      else if (listed.length > 1) return { seq, rank: Infinity, channel, channels: listed };
    }
  }
  rank ??= channels?.indexOf(channel) ?? -1;
  return { seq, rank, channel, channels };
}

/**
 * Plans the replay after `cursor` from `sources` (the stream's channels): every frame of a later
 * event, and the frames of `cursor.seq` itself on channels ranked after the cursor's, in (seq,
 * rank) order: exactly the frames live delivery would have written since. When they exceed
 * `budgetBytes` (what the subscriber queue may still hold), only the newest that fit are kept and
 * the gap is reported. A source that evicted an event after `cursor.seq` reports a gap; one whose
 * evicted bound is `cursor.seq` itself does when its frame of that event was still due (by the
 * event's channel list when known; else any channel but the cursor's, conservatively).
 */
export function planReplay(
  sources: readonly ReplaySource[],
  cursor: ReplayCursor,
  budgetBytes: number,
  skip?: (entry: HistoryEntry, source: ReplaySource) => boolean,
): ReplayPlan {
  let tooOld = false;
  const entries: HistoryEntry[] = [];
  const partial = cursor.rank !== Infinity;
  for (const source of sources) {
    const { history } = source;
    if (history.evictedMaxSeq > cursor.seq) tooOld = true;
    else if (
      partial &&
      history.evictedMaxSeq === cursor.seq &&
      history.at(cursor.seq) === undefined
    ) {
      const rank = cursor.channels?.indexOf(source.name);
      if (rank === undefined ? source.name !== cursor.channel : rank > cursor.rank) tooOld = true;
    }
    for (const entry of history.since(partial ? cursor.seq - 1 : cursor.seq)) {
      if (entry.seq === cursor.seq && entry.rank <= cursor.rank) continue;
      if (skip?.(entry, source) === true) continue;
      entries.push(entry);
    }
  }
  if (sources.length > 1) entries.sort((a, b) => a.seq - b.seq || a.rank - b.rank);
  let first = entries.length;
  let bytes = 0;
  for (; first > 0; first--) {
    const size = entries[first - 1]?.frame.length ?? 0;
    if (bytes + size > budgetBytes) break;
    bytes += size;
  }
  if (first === 0) return { entries, tooOld };
  return { entries: entries.slice(first), tooOld: true };
}
