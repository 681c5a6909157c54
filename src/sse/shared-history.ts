/**
 * Resuming across a cluster: a node that joined the cluster's id space at `coverageFrom` holds
 * every event from there on in its local history, and reads the older ones from the shared history
 * in Redis. This merges the two into one history for the replay planner; a gap in either (trimmed
 * by count or age, Redis unreachable) makes the replay report `askr:lost` (too_old). The shared
 * part starts at the resumed event itself: a client cut between two frames of one event still
 * needs that event's later channels. Pure.
 */
import { EventHistory, formatEventId, type EventRecord } from './event-history.ts';
import { encodeFrame, type SseFrame } from './sse-encoder.ts';
import type { TopicMeta } from './hub.ts';
import { isPrivateChannel } from './channel-rules.ts';

/** One event of a channel's shared history. */
export interface SharedHistoryEntry {
  seq: number;
  /** When it was published (Redis time), ms. */
  time: number;
  /** The channel's position in the publish (frames of one event go out in this order). */
  rank: number;
  event: string | undefined;
  publisherId: string | undefined;
  data: Buffer;
  /** Mercure fields of the publish, if it was one. */
  topicMeta?: TopicMeta | undefined;
  /** GRIP http-stream content (see isStreamContent in hub.ts). */
  raw?: boolean | undefined;
  /** The publisher's socket id: the stream with that id does not get the event. */
  socket?: string | undefined;
}

/** Events of the cluster's shared history that this hub did not see (see needsSharedHistory). */
export interface SharedHistory {
  /** The seq the client resumes after (or within: the id named one of its channels). */
  afterSeq: number;
  /** Per channel, entries with seq >= afterSeq, oldest first. */
  entries: ReadonlyMap<string, readonly SharedHistoryEntry[]>;
  /** Channels where an event after afterSeq is gone from the shared history. */
  gaps: ReadonlySet<string>;
  /** Channels whose entry of event afterSeq itself is gone (its frame may still have been due). */
  trimmedAt?: ReadonlySet<string>;
}

export interface MergeInput {
  channel: string;
  /** This node's history of the channel. */
  local: EventHistory;
  /** The seq the client resumes after. */
  afterSeq: number;
  /** Lowest seq this node saw live. */
  coverageFrom: number;
  /** The cluster's epoch (ids of the merged frames). */
  epoch: string;
  /** What was fetched from Redis; undefined when it could not be. */
  shared: SharedHistory | undefined;
  /** The resuming stream's socket id: events published with it are left out. */
  socketId?: string | undefined;
}

/**
 * The channel's history for a resume from before this node joined: the shared entries up to
 * coverageFrom, then the local ones. Without the shared part (Redis away) or with a gap there,
 * the result says events after afterSeq were evicted (the planner then reports the gap).
 */
export function mergeSharedHistory(input: MergeInput): EventHistory {
  const { channel, local, afterSeq, coverageFrom, epoch, shared, socketId } = input;
  const usable = shared !== undefined && shared.afterSeq === afterSeq;
  const gap = !usable || shared.gaps.has(channel) || local.evictedMaxSeq >= coverageFrom;
  const merged = new EventHistory(
    gap ? afterSeq + 1 : shared.trimmedAt?.has(channel) === true ? afterSeq : 0,
  );
  if (usable) {
    for (const e of shared.entries.get(channel) ?? []) {
      if (e.seq < afterSeq) continue;
      if (e.seq >= coverageFrom) break;
      // A private Mercure update is for askr streams on private-* / presence-* channels only.
      if (e.topicMeta?.private === true && !isPrivateChannel(channel)) continue;
      if (socketId !== undefined && e.socket === socketId) continue;
      const frame: SseFrame = { id: `${formatEventId(epoch, e.seq)}@${channel}`, data: e.data };
      if (e.event !== undefined) frame.event = e.event;
      merged.push(
        {
          seq: e.seq,
          time: e.time,
          publisherId: e.publisherId,
          rank: e.rank,
          frame: encodeFrame(frame),
          // GRIP content: a GRIP hold replays the raw bytes (the record says so).
          ...(e.raw === true ? { record: gripRecord(e, channel) } : {}),
        },
        Number.MAX_SAFE_INTEGER,
      );
    }
  }
  for (const entry of local.since(coverageFrom - 1)) merged.push(entry, Number.MAX_SAFE_INTEGER);
  return merged;
}

/** The record of a shared GRIP entry, as far as one channel's stream tells it. */
function gripRecord(e: SharedHistoryEntry, channel: string): EventRecord {
  return {
    seq: e.seq,
    channels: [channel],
    data: e.data,
    event: e.event,
    privateField: false,
    private: isPrivateChannel(channel),
    mercureId: undefined,
    retryMs: undefined,
    raw: true,
  };
}
