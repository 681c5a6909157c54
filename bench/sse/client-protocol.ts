/**
 * The IPC messages between the benchmark (client.ts) and the subscriber process (client-proc.ts).
 * Plain JSON-serialisable objects; one reply per command, in order.
 */
import type { LatencySummary } from './histogram.ts';

export type ClientCommand =
  | {
      type: 'open';
      host: string;
      port: number;
      /** Request path with query, e.g. `/askr/events?channel=bench`. */
      path: string;
      count: number;
      /** Connections being opened at once. */
      concurrency: number;
      /** After this long without a response head, the open counts as pending (socket kept). */
      headTimeoutMs: number;
    }
  /** Starts a measuring run expecting benchmark events with seq 0 .. messages-1. */
  | { type: 'reset'; messages: number }
  | { type: 'stats'; activeWindowMs: number }
  | { type: 'close' }
  | { type: 'exit' };

export interface OpenResult {
  /** Response head with status 200 received. */
  ok: number;
  /** Another status received. */
  status: number;
  /** Connection failed or closed before a head. */
  error: number;
  /** No head within headTimeoutMs (socket still open). */
  pending: number;
  ms: number;
}

export interface ClientStats {
  /** Sockets not closed. */
  open: number;
  /** Open sockets that received a 200 head. */
  headOk: number;
  /** Open sockets that received body bytes. */
  withBody: number;
  /** Open sockets that received bytes within activeWindowMs. */
  active: number;
  closedByPeer: number;
  errors: Record<string, number>;
  statuses: Record<string, number>;
  /** Benchmark events received since the last reset. */
  events: number;
  /** Other data frames (PHP bodies, flush-loop ticks). */
  otherFrames: number;
  /** Fewest deliveries of any one seq (the least-delivered message). */
  minPerSeq: number;
  /** Open streams that received every message of the run. */
  streamsComplete: number;
  /** Publish-to-read latency of the run's benchmark events, ms. */
  latency: LatencySummary;
}

export type ClientReply =
  | { type: 'ready' }
  | { type: 'opened'; result: OpenResult }
  | { type: 'stats'; stats: ClientStats }
  | { type: 'done' };
