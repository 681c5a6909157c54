/**
 * One stream's own queue, and what it is charged for. A frame goes to the sink only when the
 * sink holds no write of this stream and is not over its high-water mark; otherwise it waits
 * here, a reference to the shared encoded Buffer, until the sink hands on its last write (or
 * 'drain'); then everything queued goes out in ONE write. The hub compares held() with
 * sse.subscriber_queue_size and drops a stream over it.
 * Invariants: frames leave in the order they came; held() counts what is really held (bytes,
 * per-entry and per-write overheads, the sink's own buffer); clear() releases at once.
 */
import type { SseSink } from './hub.ts';

/**
 * What a stream holds besides the bytes it counts, measured on Node 24 x64 (heapUsed + external
 * after gc, 50,000 writes to a stalled socket; docs/sse.md, Slow clients):
 * - a write handed to a chunked ServerResponse and not yet taken by the socket: 216-320 B of
 *   heap besides its data (the chunk-size string and four buffered socket write requests); to a
 *   connection taken over from node:http (src/http/detached-response.ts) 250-270 B (three buffered
 *   socket writes: size line, frame, CRLF), so one bound serves both;
 * - a frame in the hub's own queue: a reference in an array, ~9 B (16 with the array's growth).
 *   The frame itself is shared with history and the channel's other streams; its bytes count in
 *   full for every stream holding it, its Buffer object (~113 B) does not (at most
 *   QUEUE_MERGE_FRAMES - 1 frames per stream are held that way: older ones are merged).
 * Before they were counted, a stalled stream of small events held 9-16x its bound.
 */
export const SINK_WRITE_OVERHEAD_BYTES = 320;
export const QUEUED_FRAME_OVERHEAD_BYTES = 16;
/** A stream's queued frames are merged this many at a time into one Buffer: a long queue is a few
 * Buffers (bytes outside the JS heap), not thousands of references the GC copies over and over;
 * streams that queued the same frames share the merged Buffer (see FrameMerger). */
export const QUEUE_MERGE_FRAMES = 256;

/** Bytes in every stream's own queue together (the hub's stats). */
export interface QueueTotals {
  bytes: number;
}

/**
 * Streams of one channel queue the same frames during a burst or a stall: the first one's merged
 * copy serves the others (one copy, not one per stream; compared by identity, never by content).
 */
export class FrameMerger {
  #last: { parts: readonly Buffer[]; bytes: Buffer } | undefined;

  merge(parts: Buffer[], bytes: number): Buffer {
    const last = this.#last;
    if (
      last !== undefined &&
      last.parts.length === parts.length &&
      parts.every((part, i) => part === last.parts[i])
    ) {
      return last.bytes;
    }
    const merged = Buffer.concat(parts, bytes);
    this.#last = { parts, bytes: merged };
    return merged;
  }

  /** Drops the last merge (a quiet hub pins nothing). */
  forget(): void {
    this.#last = undefined;
  }
}

export class StreamQueue {
  readonly #sink: SseSink;
  readonly #totals: QueueTotals;
  readonly #merger: FrameMerger;
  /** Frames in order: references to shared Buffers (merged QUEUE_MERGE_FRAMES at a time). */
  #queue: Buffer[] = [];
  #bytes = 0;
  /** Frames at the end of the queue not merged yet, and their bytes. */
  #looseFrames = 0;
  #looseBytes = 0;
  /** Writes handed to the sink whose callback has not run: the sink still holds them. */
  #sinkWrites = 0;
  /** The write callback: one function per stream, not one per write. */
  readonly #onWritten: () => void;

  /** `onFlushable`: the sink handed on its last write and frames are waiting (call take()). */
  constructor(sink: SseSink, totals: QueueTotals, merger: FrameMerger, onFlushable: () => void) {
    this.#sink = sink;
    this.#totals = totals;
    this.#merger = merger;
    this.#onWritten = () => {
      if (--this.#sinkWrites === 0 && this.#queue.length > 0) onFlushable();
    };
  }

  /** Entries waiting (a merged block counts as one). */
  get frames(): number {
    return this.#queue.length;
  }

  /** Whether a new frame must wait here rather than go to the sink now. */
  mustQueue(): boolean {
    return this.#queue.length > 0 || this.sinkBusy();
  }

  /** Whether the sink still holds a write of this stream, or is over its high-water mark: what
   * is queued goes out when it hands the write on (onFlushable) or on 'drain'. */
  sinkBusy(): boolean {
    return this.#sinkWrites > 0 || this.#sink.writableNeedDrain;
  }

  enqueue(chunk: Buffer): void {
    this.#queue.push(chunk);
    this.#bytes += chunk.length;
    this.#totals.bytes += chunk.length;
    this.#looseBytes += chunk.length;
    if (++this.#looseFrames === QUEUE_MERGE_FRAMES) {
      this.#queue.push(
        this.#merger.merge(this.#queue.splice(-QUEUE_MERGE_FRAMES), this.#looseBytes),
      );
      this.#looseFrames = 0;
      this.#looseBytes = 0;
    }
  }

  /** Hands `chunk` to the sink, counted until its callback runs. Throws what the sink throws. */
  writeToSink(chunk: Buffer): void {
    this.#sinkWrites++;
    try {
      this.#sink.write(chunk, this.#onWritten);
    } catch (err) {
      this.#sinkWrites--;
      throw err;
    }
  }

  /** Empties the queue; returns its frames as one Buffer (undefined if empty). */
  take(): Buffer | undefined {
    const queue = this.#queue;
    const bytes = this.#bytes;
    this.clear();
    return queue.length <= 1 ? queue[0] : this.#merger.merge(queue, bytes);
  }

  /** Releases the queue at once. */
  clear(): void {
    if (this.#queue.length === 0) return;
    this.#totals.bytes -= this.#bytes;
    this.#queue = [];
    this.#bytes = 0;
    this.#looseFrames = 0;
    this.#looseBytes = 0;
  }

  /** What the stream holds, as compared with sse.subscriber_queue_size. */
  held(): number {
    return (
      this.#bytes +
      this.#queue.length * QUEUED_FRAME_OVERHEAD_BYTES +
      this.#sinkWrites * SINK_WRITE_OVERHEAD_BYTES +
      this.#sink.writableLength
    );
  }
}
