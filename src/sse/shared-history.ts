/**
 * Resuming across a cluster: a node that joined the cluster's id space at `coverageFrom` holds
 * every event from there on in its local history, and reads the older ones from the shared history
 * in Redis. This merges the two into one history for the replay planner; a gap in either (trimmed
 * by count or age, Redis unreachable) makes the replay report `askr:lost` (too_old). Pure.
 */
import { EventHistory, formatEventId } from './event-history.ts';
import { encodeFrame, type SseFrame } from './sse-encoder.ts';
import type { TopicMeta } from './hub.ts';
import { isPrivateChannel } from './channel-rules.ts';

/** One event of a channel's shared history. */
export interface SharedHistoryEntry {
  seq: number;
  /** When it was published (Redis time), ms. */
  time: number;
  /** The channel's position in the publish (the lowest is replayed for a multi-channel event). */
  rank: number;
  event: string | undefined;
  publisherId: string | undefined;
  data: Buffer;
  /** Mercure fields of the publish, if it was one. */
  topicMeta?: TopicMeta | undefined;
}

/** Events of the cluster's shared history that this hub did not see (see needsSharedHistory). */
export interface SharedHistory {
  /** The seq the client resumes after. */
  afterSeq: number;
  /** Per channel, entries with seq > afterSeq, oldest first. */
  entries: ReadonlyMap<string, readonly SharedHistoryEntry[]>;
  /** Channels where an event after afterSeq is gone from the shared history. */
  gaps: ReadonlySet<string>;
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
}

/**
 * The channel's history for a resume from before this node joined: the shared entries up to
 * coverageFrom, then the local ones. Without the shared part (Redis away) or with a gap there,
 * the result says events after afterSeq were evicted (the planner then reports the gap).
 */
export function mergeSharedHistory(input: MergeInput): EventHistory {
  const { channel, local, afterSeq, coverageFrom, epoch, shared } = input;
  const usable = shared !== undefined && shared.afterSeq === afterSeq;
  const gap = !usable || shared.gaps.has(channel) || local.evictedMaxSeq >= coverageFrom;
  const merged = new EventHistory(gap ? afterSeq + 1 : 0);
  if (usable) {
    for (const e of shared.entries.get(channel) ?? []) {
      if (e.seq >= coverageFrom) break;
      // A private Mercure update is for askr streams on private-* / presence-* channels only.
      if (e.topicMeta?.private === true && !isPrivateChannel(channel)) continue;
      const frame: SseFrame = { id: `${formatEventId(epoch, e.seq)}@${channel}`, data: e.data };
      if (e.event !== undefined) frame.event = e.event;
      merged.push(
        {
          seq: e.seq,
          time: e.time,
          publisherId: e.publisherId,
          rank: e.rank,
          frame: encodeFrame(frame),
        },
        Number.MAX_SAFE_INTEGER,
      );
    }
  }
  for (const entry of local.since(coverageFrom - 1)) merged.push(entry, Number.MAX_SAFE_INTEGER);
  return merged;
}
