/**
 * The in-process SSE hub: channels, subscribers (streams), publish fan-out, replay, limits.
 * Invariants: every event is encoded once per channel and the same Buffer goes to every
 * subscriber of that channel; a publish never waits (a subscriber holding more than the bound is
 * destroyed, its queue released at once); an askr stream gets one frame per (event, subscribed
 * channel), at most once, in (seq, publish rank) order, live and in a replay, so a resume from
 * `<epoch>-<seq>@<channel>` continues with that event's later channels; a Mercure stream gets each
 * event at most once, in seq order; a stream whose socket id is the publish's `socket` never gets
 * that event (live or replay); admission (total and per-IP limits) is decided where a place is
 * taken, synchronously; two timers in all (heartbeat, sweep), both unref'd; nothing throws out of
 * a timer or a sink handler.
 *
 *   publish ──▶ seq++ ──▶ per channel, in publish order: encode `id: <epoch>-<seq>@<channel>`
 *                           ├──▶ history ring
 *                           └──▶ each subscriber ──▶ askr: skip the publisher's socket ──▶ #queue
 *                                                └─▶ Mercure: skip if this seq was written
 *
 *   #queue ──▶ own queue ──▶ setImmediate (once per event-loop turn, issue 13): each stream whose
 *              sink holds no write of ours ──▶ ONE write of everything the turn's publishes queued
 *              (the 202 of an HTTP publish leaves before the fan-out; a turn's k publishes cost one
 *              writev per stream, not k)
 *   #write ──▶ sink holds no write of ours? ──yes──▶ sink.write(frame, onWritten)   (zero-copy)
 *                     └──no──▶ own queue [256 merged | frame, frame, …] ──onWritten / 'drain'
 *                                                                        └──▶ ONE write
 *          └──▶ heldBytes() > subscriberQueueBytes? ──▶ destroy, count, log
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Admission, type StreamSlot } from './admission.ts';
import {
  FrameMerger,
  SINK_WRITE_OVERHEAD_BYTES,
  StreamQueue,
  type QueueTotals,
} from './stream-queue.ts';
import { mergeSharedHistory, type SharedHistory } from './shared-history.ts';
import { channelNameProblem, isPrivateChannel } from './channel-rules.ts';
import { ConfigError, ErrorCodes, SidecarError, toError } from '../errors.ts';
import {
  ChannelTombstones,
  EventHistory,
  formatEventId,
  parseEventId,
  planReplay,
  replayCursor,
  type ParsedEventId,
  type ReplaySource,
  type EventRecord,
  type HistoryEntry,
} from './event-history.ts';
import { encodeFrame, PING_FRAME, type SseFrame } from './sse-encoder.ts';
import { ownBytes } from './kept-bytes.ts';

/**
 * Who published. `grip` is Pushpin's publish API (src/broadcast/pushpin-publish.ts): its data is
 * http-stream content, the raw bytes of the stream (see {@link isStreamContent}).
 */
export type IngressKind = 'datagram' | 'http' | 'grip' | 'internal' | 'mercure' | 'whisper';

/**
 * Whether a publish of this ingress carries GRIP http-stream content: a GRIP hold
 * (SubscribeInput.grip) gets its data written as is, as Pushpin writes it; every other stream gets
 * an ordinary event whose data it is. The cluster bus carries the flag (BusEvent.raw).
 */
export function isStreamContent(ingress: IngressKind): boolean {
  return ingress === 'grip';
}
/** `hold`: a PHP response held open; `events`: the events endpoint; `mercure`: the Mercure hub. */
export type StreamKind = 'hold' | 'events' | 'mercure';

/**
 * What a Mercure stream selects and may read (src/mercure builds it from the request's matchers
 * and its access token). Its exact topics are indexed like channels; a view with other matchers
 * is offered every event.
 */
export interface TopicView {
  /** Topics selected by exact matchers (indexed: no per-event cost for other topics). */
  readonly exact: readonly string[];
  /** True when the stream has matchers beyond `exact` (URL patterns, `*`, URI templates). */
  readonly patterns: boolean;
  /** Whether an event on these topics is selected (any topic matching any matcher). */
  selects(topics: readonly string[]): boolean;
  /** Whether the stream may read a private event on these topics (a grant matches one). */
  mayRead(topics: readonly string[]): boolean;
}

/** Mercure fields of a publish. */
export interface TopicMeta {
  /** The `private` field: Mercure readers need a grant; askr streams get it on private-* /
   * presence-* channels only. */
  private: boolean;
  /** The publisher's own id, sent as is (not deduplicated: Mercure allows reuse). */
  id?: string | undefined;
  retryMs?: number | undefined;
}

export interface HubOptions {
  /** Events kept per channel for replay (0: no history, every reconnect after a miss is lost). */
  historySize: number;
  /** Oldest event kept for replay, ms (0: no age bound). */
  historyMaxAgeMs: number;
  /** A stream holding more than this many bytes (see {@link Hub.heldBytes}) is disconnected. */
  subscriberQueueBytes: number;
  /** Period of the `: ping` heartbeat, ms (one timer for every stream; 0 off). */
  heartbeatIntervalMs: number;
  /** A stream is ended (with a `retry:` hint) this long after it connected, ms; 0 off. */
  maxLifetimeMs: number;
  /** A stream that got no event for this long is ended (with a `retry:` hint), ms; 0 off. */
  idleTimeoutMs: number;
  /** `retry:` sent on connect, ms. */
  retryMs: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** Period of the coarse timer (history age, lifetime, idle), ms; default 1000. */
  sweepIntervalMs?: number;
  /** Identifies this hub instance in event ids; default: random base36, 8 chars. */
  epoch?: string;
  logger: Logger;
  hooks?: HubHooks;
  /** Clock for ages and lifetimes (tests); default Date.now. */
  now?: () => number;
  /** Runs `flush`, which writes what the publishes of this turn queued, once per turn; default
   * setImmediate (after the turn's I/O callbacks). Tests reading fake sinks at once pass
   * `(flush) => flush()`. */
  defer?: (flush: () => void) => void;
  /** State saved by exportState() before a restart: epoch, seq and histories continue. */
  state?: HubState;
}

/** What survives a restart (sse.state_file): ids keep their epoch and order, replay keeps working. */
export interface HubState {
  epoch: string;
  seq: number;
  channels: Array<{ name: string; evictedMaxSeq: number; entries: HistoryEntry[] }>;
  tombstones: { floor: number; channels: Array<[string, number, number]> };
}

/** Metric callbacks. They run synchronously on the hot path: keep them cheap. */
export interface HubHooks {
  onPublish?(ingress: IngressKind, channels: number): void;
  /** Per published event: subscribers it was handed to (written at the end of the event-loop
   * turn, one write per stream for all of the turn's events), and the time the hand-over took. */
  onDeliver?(count: number, lagMs: number): void;
  onSlowConsumer?(): void;
  /** Per stream that sent a Last-Event-ID of this epoch: frames replayed (possibly 0; an askr
   * stream gets one per event and subscribed channel, a Mercure stream one per event). */
  onReplay?(events: number): void;
  onLost?(reason: LostReason): void;
  onSubscribersChanged?(): void;
}

export type LostReason = 'too_old' | 'epoch' | 'unknown_id' | 'bus';

/** What the hub writes to. A node:http ServerResponse satisfies it. */
export interface SseSink {
  /** `callback` runs once the sink handed `chunk` on (or failed to): until then it holds it. */
  write(chunk: Buffer, callback?: (error?: Error | null) => void): boolean;
  end(): void;
  destroy(error?: Error): void;
  readonly writableLength: number;
  /** True from a write() that returned false until 'drain'. */
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
  on(event: 'drain', listener: () => void): unknown;
}

export type { StreamSlot } from './admission.ts';

export interface PublishInput {
  channels: readonly string[];
  data: Buffer;
  event?: string;
  /** The publisher's own id: a second publish with an id still in history is dropped. */
  publisherId?: string;
  /** Pushpin's close action: after the event (if data is non-empty), end every stream. */
  close?: boolean;
  ingress: IngressKind;
  /** Mercure fields; channels may then be any topic (no control characters). */
  topicMeta?: TopicMeta;
  /** The publisher's socket id (Laravel's toOthers(), a whisper): the askr stream with that
   * socket id does not get the event, live or in a replay. Never part of the data. */
  socket?: string | undefined;
}

/** An event's fields as every path carries them (a local publish, the cluster bus, a delivery). */
export interface EventFields {
  channels: readonly string[];
  data: Buffer;
  event?: string | undefined;
  publisherId?: string | undefined;
  close?: boolean | undefined;
  topicMeta?: TopicMeta | undefined;
  /** GRIP http-stream content (see isStreamContent). */
  raw?: boolean | undefined;
  /** The publisher's socket id: that stream does not get the event. */
  socket?: string | undefined;
}

export interface PublishResult {
  /** `<epoch>-<seq>`, or null when deduplicated or nothing was sent. */
  id: string | null;
  /** Streams the event was written to. */
  subscribers: number;
  /** Streams ended by a close action. */
  closed: number;
}

export type { SharedHistory } from './shared-history.ts';

/** How events enter the hub: Hub.publish on one node, the cluster bus on several. */
export type PublishFn = (input: PublishInput) => Promise<PublishResult>;

/** In a cluster, fetches the shared history a resume from before this node joined needs. */
export type SharedHistoryFn = (
  channels: readonly string[],
  lastEventId: string | null | undefined,
) => Promise<SharedHistory | undefined>;

export interface SubscribeInput {
  sink: SseSink;
  /** What reserve() was given, when the stream is written to another sink (a response whose
   * connection the stream took over): the place reserved for it is taken. Default: `sink`. */
  reservedAs?: SseSink;
  channels: readonly string[];
  lastEventId?: string | null;
  clientIp: string;
  kind: StreamKind;
  /** What a cluster node fetched for a resume from before it joined (needsSharedHistory). */
  shared?: SharedHistory;
  /** Bytes written first, after `retry:` (PHP's body for holds; a Mercure stream's replay). */
  initial?: Buffer;
  /** A Mercure stream: its selection and grants (channels must be view.exact). */
  view?: TopicView;
  /** The stream is ended at this time, ms since the epoch (a Mercure token's exp). */
  expiresAt?: number;
  /** The askr stream's socket id (`<digits>.<digits>`): publishes carrying it as their `socket`
   * are not written to this stream. Mercure streams have none. */
  socketId?: string | undefined;
  /** A GRIP hold (`Grip-Hold: stream`): events published through GRIP (isStreamContent) are
   * written as their raw bytes, without SSE framing, as Pushpin writes http-stream content. */
  grip?: boolean;
}

/** A Mercure stream's resume, planned before its response head (planTopicReplay). */
export interface TopicReplay {
  /** Frames to write first (pass as SubscribeInput.initial). */
  frames: Buffer[];
  /** Mercure-Last-Event-ID: the id the replay starts after, or `earliest`. */
  anchor: string;
}

type TunableKey = Exclude<
  keyof HubOptions,
  'logger' | 'hooks' | 'epoch' | 'now' | 'defer' | 'state'
>;
type Tunables = Record<TunableKey, number>;
/** What reconfigure() may change: limits, intervals and history bounds. */
export type HubTunables = Partial<Tunables>;

interface Subscriber {
  readonly id: number;
  readonly sink: SseSink;
  readonly channels: readonly string[];
  readonly clientIp: string;
  readonly kind: StreamKind;
  readonly connectedAt: number;
  lastEventAt: number;
  /** Seq of the last event written: a Mercure stream gets a multi-topic event once; an askr
   * stream is counted once per event however many of its channels it reached. */
  lastSeq: number;
  /** The askr stream's socket id (SubscribeInput.socketId). */
  readonly socketId: string | undefined;
  closed: boolean;
  /** What the stream holds besides the sink: its own queue of frames, its unsent writes. */
  readonly queue: StreamQueue;
  /** A Mercure stream's selection and grants; undefined for askr streams. */
  readonly view: TopicView | undefined;
  /** A GRIP hold: GRIP-published events are written raw (SubscribeInput.grip). */
  readonly grip: boolean;
  /** Ends the stream at its token's exp. */
  expiryTimer: NodeJS.Timeout | undefined;
}

interface Channel {
  readonly name: string;
  readonly subscribers: Set<Subscriber>;
  history: EventHistory;
}

const TUNABLE_KEYS: readonly TunableKey[] = [
  'historySize',
  'historyMaxAgeMs',
  'subscriberQueueBytes',
  'heartbeatIntervalMs',
  'maxLifetimeMs',
  'idleTimeoutMs',
  'retryMs',
  'maxConnections',
  'maxConnectionsPerIp',
  'sweepIntervalMs',
];
const EPOCH_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** Deleted channels' evictions are remembered this long (see ChannelTombstones). */
const TOMBSTONE_TTL_MS = 10 * 60_000;
const TOMBSTONE_MAX = 100_000;
const SLOW_LOG_INTERVAL_MS = 10_000;
export { QUEUED_FRAME_OVERHEAD_BYTES, SINK_WRITE_OVERHEAD_BYTES } from './stream-queue.ts';
/** The client's Last-Event-ID is echoed in askr:lost; a query parameter could be long. */
const LOST_ID_MAX_CHARS = 256;
/** Length limits are the ingress's (it has the config); the hub guards the charset only, since
 * channel names are written into `id:` lines. */
const ANY_LENGTH = Number.MAX_SAFE_INTEGER;
const EVENT_FORBIDDEN = /[\r\n]/;
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const TOPIC_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const ID_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f]/;
/** Hub-generated Mercure ids: `urn:askr:<epoch>-<seq>` (an IRI, as Mercure wants). */
export const MERCURE_ID_PREFIX = 'urn:askr:';

/** An id without the `urn:askr:` prefix (askr and Mercure forms of our ids parse alike). */
function ownIdPart(id: string): string {
  return id.startsWith(MERCURE_ID_PREFIX) ? id.slice(MERCURE_ID_PREFIX.length) : id;
}

export function mercureEventId(epoch: string, seq: number): string {
  return `${MERCURE_ID_PREFIX}${formatEventId(epoch, seq)}`;
}
const noop = (): void => {};

/**
 * Throws ConfigError for a value reconfigure() would refuse, so a reload can check every component
 * before it applies anything.
 */
export function checkHubTunables(values: HubTunables): void {
  for (const key of TUNABLE_KEYS) {
    const value = values[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new ConfigError(`hub option ${key} must be a non-negative number, got ${value}`);
    }
  }
}

export class Hub {
  /** Identifies this id space in event ids; a Last-Event-ID of another epoch is unknown. In a
   * cluster it is the cluster's epoch while the bus is up, a local one while it is down. */
  #epoch: string;
  /** Lowest seq this hub saw live since it joined the id space (cluster mode; see useEpoch):
   * a replay from before it needs the shared history. 0: every event of the epoch was seen. */
  #coverageFrom = 0;
  readonly #logger: Logger;
  readonly #hooks: HubHooks;
  readonly #now: () => number;
  readonly #defer: (flush: () => void) => void;
  #opts: Tunables;
  readonly #channels = new Map<string, Channel>();
  readonly #subscribers = new Map<number, Subscriber>();
  readonly #admission: Admission;
  /** Bytes in every stream's own queue (stats). */
  readonly #queueTotals: QueueTotals = { bytes: 0 };
  /** Shares one merged copy of queued frames among the streams that queued the same ones. */
  readonly #merger = new FrameMerger();
  /** Streams that publishes of this event-loop turn queued frames for, written at its end. */
  readonly #turnPending = new Set<Subscriber>();
  #turnScheduled = false;
  readonly #byKind: Record<StreamKind, number> = { hold: 0, events: 0, mercure: 0 };
  /** Mercure streams with matchers beyond exact topics: offered every event. */
  readonly #patternSubs = new Set<Subscriber>();
  #tombstones = new ChannelTombstones(TOMBSTONE_TTL_MS, TOMBSTONE_MAX);
  #seq = 0;
  /** The Mercure id of the last event dispatched (the publisher's or ours); null: none yet. */
  #lastMercureId: string | null = null;
  #nextSubscriberId = 1;
  #retryFrame: Buffer;
  #draining = false;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #slowPending = 0;
  #slowLoggedAt = Number.NEGATIVE_INFINITY;

  constructor(options: HubOptions) {
    const epoch = options.state?.epoch ?? options.epoch ?? randomInt(36 ** 7, 36 ** 8).toString(36);
    if (!EPOCH_RE.test(epoch)) {
      throw new ConfigError(`hub epoch ${JSON.stringify(epoch)} must be 1-64 of A-Z a-z 0-9 _ . -`);
    }
    this.#epoch = epoch;
    this.#logger = options.logger;
    this.#hooks = options.hooks ?? {};
    this.#now = options.now ?? Date.now;
    this.#defer = options.defer ?? setImmediate;
    const opts = { sweepIntervalMs: 1000 } as Tunables;
    for (const key of TUNABLE_KEYS) {
      const value = options[key];
      if (value !== undefined) opts[key] = value;
    }
    checkHubTunables(opts);
    this.#opts = opts;
    this.#admission = new Admission(() => this.#opts);
    this.#retryFrame = encodeFrame({ retryMs: opts.retryMs });
    if (options.state !== undefined) this.#importState(options.state);
    this.#startTimers();
  }

  get epoch(): string {
    return this.#epoch;
  }

  /** The Mercure id of the last event dispatched, `earliest` before any (a reconciliation cursor). */
  get lastMercureId(): string {
    return (
      this.#lastMercureId ?? (this.#seq > 0 ? mercureEventId(this.#epoch, this.#seq) : 'earliest')
    );
  }

  /** The newest seq of the current epoch this hub knows of. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Switches to another id space (cluster mode: the cluster's epoch when the bus comes up, a
   * local one while it is down). Local histories belong to the old space and are dropped; events
   * of the new epoch up to `seq` were not seen here (see {@link Hub.needsSharedHistory}).
   */
  useEpoch(epoch: string, seq: number): void {
    if (!EPOCH_RE.test(epoch)) throw new ConfigError(`hub epoch ${JSON.stringify(epoch)} invalid`);
    this.#epoch = epoch;
    this.#seq = seq;
    this.#coverageFrom = seq + 1;
    // A stream's last seq belongs to the old space: kept, it could equal a new event's seq and
    // make #deliver skip that event as already written.
    for (const sub of this.#subscribers.values()) sub.lastSeq = -1;
    for (const channel of this.#channels.values()) {
      channel.history = new EventHistory();
      this.#maybeDelete(channel);
    }
    // Tombstones hold seqs of the old space too: a fresh set, or a re-created channel would
    // report events of the new epoch as evicted.
    this.#tombstones = new ChannelTombstones(TOMBSTONE_TTL_MS, TOMBSTONE_MAX);
  }

  /** Counts a publish this node accepted for the cluster bus (askr_events_published_total). */
  notePublish(ingress: IngressKind, channels: number): void {
    this.#hooks.onPublish?.(ingress, channels);
  }

  /**
   * Checks a publish without delivering it (cluster mode checks before sending to the bus).
   * @throws as {@link Hub.publish}.
   */
  checkPublish(input: Pick<PublishInput, 'channels' | 'event' | 'topicMeta'>): readonly string[] {
    if (input.event !== undefined && EVENT_FORBIDDEN.test(input.event)) {
      throw new SidecarError(ErrorCodes.SSE_ENCODE, 'SSE event name must not contain CR or LF');
    }
    const id = input.topicMeta?.id;
    if (id !== undefined && ID_FORBIDDEN.test(id)) {
      throw new SidecarError(ErrorCodes.SSE_ENCODE, 'event id must not contain control characters');
    }
    return checkChannels(input.channels, input.topicMeta === undefined ? 'channel' : 'topic');
  }

  /**
   * Delivers an event that already has its seq (from the cluster bus): stored in the local
   * history and written to this hub's streams exactly as a local publish would be.
   */
  deliverNumbered(input: EventFields & { seq: number }): PublishResult {
    // The publishing node checked the names for their ingress; here only what framing needs.
    const channels = checkChannels(input.channels, 'topic');
    if (input.seq > 0) this.#seq = Math.max(this.#seq, input.seq);
    return this.#emit(channels, input.seq, input);
  }

  /**
   * Whether a stream resuming from `lastEventId` needs events this hub did not see (it joined
   * the cluster's id space after them): the caller fetches them and passes them to subscribe().
   */
  needsSharedHistory(lastEventId: string | null | undefined): number | null {
    if (this.#coverageFrom === 0 || lastEventId === undefined || lastEventId === null) return null;
    const parsed = parseEventId(lastEventId);
    if (parsed === null || parsed.epoch !== this.#epoch || parsed.seq > this.#seq) return null;
    return this.#needsShared(parsed) ? parsed.seq : null;
  }

  /** A resume from `parsed` needs frames this node did not see: events after its seq, or (the id
   * names a channel) the later channels of that event itself. */
  #needsShared(parsed: ParsedEventId): boolean {
    const from = parsed.channel === undefined ? parsed.seq + 1 : parsed.seq;
    return from < this.#coverageFrom;
  }

  /** Tells every stream that events may have been missed (the bus was down): askr:lost. */
  announceLost(reason: LostReason): number {
    const frame = this.#lostFrameFor(reason, null, false);
    const mercureFrame = this.#lostFrameFor(reason, null, true);
    let told = 0;
    for (const sub of [...this.#subscribers.values()]) {
      if (this.#writeBounded(sub, sub.view === undefined ? frame : mercureFrame)) told++;
      this.#hooks.onLost?.(reason);
    }
    return told;
  }

  /** A copy of the replay state, for sse.state_file (written on graceful shutdown). */
  exportState(): HubState {
    return {
      epoch: this.#epoch,
      seq: this.#seq,
      channels: [...this.#channels.values()].map((c) => ({
        name: c.name,
        evictedMaxSeq: c.history.evictedMaxSeq,
        entries: c.history.since(-1),
      })),
      tombstones: this.#tombstones.export(),
    };
  }

  #importState(state: HubState): void {
    this.#seq = state.seq;
    this.#tombstones.import(state.tombstones);
    const { historySize } = this.#opts;
    for (const saved of state.channels) {
      const channel = this.#channel(saved.name);
      channel.history.evictedMaxSeq = Math.max(channel.history.evictedMaxSeq, saved.evictedMaxSeq);
      for (const entry of saved.entries) channel.history.push(entry, historySize);
      this.#maybeDelete(channel);
    }
  }

  /** A cheap look-ahead: the reason a new stream from this IP would be refused now, else null.
   * Advisory only: reserve() and subscribe() decide, atomically, when the place is taken. */
  admissionProblem(clientIp: string): string | null {
    return this.#admission.problem(clientIp);
  }

  /**
   * Takes a place now for the stream `sink` will carry, against sse.max_connections and
   * sse.max_connections_per_ip (a slot counts as a stream). For a stream that must wait before it
   * can subscribe (channel auth, the response head): nothing can overtake it meanwhile.
   * subscribe() with the same sink takes the place; the sink's 'close' gives it back otherwise
   * (release() gives it back sooner). A second reserve() for the same sink returns the same slot.
   * @throws SidecarError(LIMIT) naming the config key, or while draining (closeAll).
   */
  reserve(sink: SseSink, clientIp: string): StreamSlot {
    return this.#admission.reserve(sink, clientIp);
  }

  /**
   * Publishes one event to `channels` (duplicates ignored). Never blocks on slow subscribers.
   * @throws SidecarError(SSE_ENCODE) for CR/LF in `event`; SidecarError(BAD_REQUEST)
   *   for no channel or a channel name outside the channel charset.
   */
  publish(input: PublishInput): PublishResult {
    const channels = this.checkPublish(input);
    this.#hooks.onPublish?.(input.ingress, channels.length);
    const { publisherId } = input;
    const isEvent = !(input.close === true && input.data.length === 0);
    if (
      isEvent &&
      publisherId !== undefined &&
      channels.some((name) => this.#channels.get(name)?.history.hasPublisherId(publisherId))
    ) {
      return { id: null, subscribers: 0, closed: 0 };
    }
    return this.#emit(channels, isEvent ? ++this.#seq : 0, {
      ...input,
      raw: isStreamContent(input.ingress),
    });
  }

  /**
   * Delivers one numbered event (seq 0: none, a close action alone) to `channels`' streams and
   * history, then the close action if asked: the part a local publish and a cluster delivery share.
   */
  #emit(
    channels: readonly string[],
    seq: number,
    input: Omit<EventFields, 'channels'>,
  ): PublishResult {
    let id: string | null = null;
    let delivered = 0;
    if (seq > 0) {
      const started = performance.now();
      id = formatEventId(this.#epoch, seq);
      const frame: SseFrame = { data: input.data };
      if (input.event !== undefined) frame.event = input.event;
      const meta = input.topicMeta;
      const privateField = meta?.private === true;
      const record: EventRecord = {
        seq,
        channels,
        // Kept in the history for minutes: never a view pinning a larger allocation.
        data: ownBytes(input.data),
        event: input.event,
        privateField,
        private: privateField || channels.some(isPrivateChannel),
        mercureId: meta?.id,
        retryMs: meta?.retryMs,
        ...(input.raw === true ? { raw: true } : {}),
        ...(input.socket === undefined ? {} : { socket: input.socket }),
      };
      this.#lastMercureId = record.mercureId ?? mercureEventId(this.#epoch, seq);
      delivered = this.#deliver(channels, seq, id, frame, input.publisherId, record);
      this.#hooks.onDeliver?.(delivered, performance.now() - started);
    }
    const closed = input.close === true ? this.#closeChannels(channels) : 0;
    return { id, subscribers: delivered, closed };
  }

  /**
   * Starts a stream: writes `retry:`, `initial`, the replay (or askr:lost) in one write, then live
   * events. The stream is removed when the sink emits 'close'. End it with the returned close(),
   * never with sink.end() directly (the hub would write to an ended response).
   *
   * Admission happens here, synchronously with the insertion: a sink with a live reserve() slot
   * takes that place; any other is checked against the limits now. Nothing is written to the
   * sink before admission, so a caller may reserve(), write its response head, then subscribe().
   * @throws SidecarError(BAD_REQUEST) for no channel or an invalid channel name;
   *   SidecarError(LIMIT) naming the config key (sse.max_connections or
   *   sse.max_connections_per_ip) when the sink has no slot and a limit is reached.
   *   When it throws, the sink is untouched and its slot (if any) still held.
   */
  subscribe(input: SubscribeInput): { id: number; close(): void } {
    const { view } = input;
    const channels =
      view === undefined
        ? checkChannels(input.channels, 'channel')
        : view.exact.length === 0
          ? view.exact
          : checkChannels(view.exact, 'topic');
    if (view !== undefined && channels.length === 0 && !view.patterns) {
      throw new SidecarError(ErrorCodes.BAD_REQUEST, 'no topic selected');
    }
    const { sink, clientIp } = input;
    const starts = !sink.destroyed && !this.#draining;
    this.#admission.enter(input.reservedAs ?? sink, clientIp, starts);
    const id = this.#nextSubscriberId++;
    if (sink.destroyed) return { id, close: noop };
    if (this.#draining) {
      // Admitted before the drain began: tell it to come back (to a restarted instance).
      this.#endSink(sink, this.#retryFrame);
      return { id, close: noop };
    }
    const now = this.#now();
    const sub: Subscriber = {
      id,
      sink,
      channels,
      clientIp,
      kind: input.kind,
      connectedAt: now,
      lastEventAt: now,
      lastSeq: this.#seq,
      closed: false,
      // The sink handed its last write on: what queued meanwhile goes out now, in one write.
      queue: new StreamQueue(sink, this.#queueTotals, this.#merger, () => {
        this.#guard('stream write', () => this.#flush(sub));
      }),
      view,
      socketId: view === undefined ? input.socketId : undefined,
      grip: input.grip === true,
      expiryTimer: undefined,
    };
    this.#subscribers.set(id, sub);
    if (view?.patterns === true) this.#patternSubs.add(sub);
    if (input.expiresAt !== undefined) {
      // A Mercure token's exp: the stream ends then at the latest (the client reconnects with a
      // fresh token). Timers are unref'd: they never keep the process alive.
      const ms = Math.max(0, input.expiresAt - this.#now());
      sub.expiryTimer = setTimeout(
        () => this.#guard('stream expiry', () => this.#end(sub, undefined)),
        Math.min(ms, 2 ** 31 - 1),
      );
      sub.expiryTimer.unref();
    }
    this.#byKind[sub.kind]++;
    for (const name of channels) this.#channel(name).subscribers.add(sub);
    sink.once('close', () => this.#guard('stream close', () => this.#remove(sub)));
    sink.on('drain', () => this.#guard('stream drain', () => this.#flush(sub)));
    this.#hooks.onSubscribersChanged?.();

    // The first bytes go out in one write (one sink entry, not one per replayed event), checked
    // against the queue bound once, at the end: the replay is planned to fit what is left of it.
    const parts: Buffer[] = [this.#retryFrame];
    if (input.initial !== undefined && input.initial.length > 0) parts.push(input.initial);
    const { lastEventId } = input;
    if (lastEventId !== undefined && lastEventId !== null && lastEventId !== '') {
      this.#replay(sub, lastEventId, parts, input.shared);
    }
    const first = parts.length === 1 ? this.#retryFrame : Buffer.concat(parts);
    // sub.closed: the write failed and the stream is gone (its channels may be too).
    if (this.#write(sub, first) && this.#held(sub) > this.#opts.subscriberQueueBytes) {
      this.#dropSlow(sub);
    }
    return { id, close: () => this.#end(sub, undefined) };
  }

  /**
   * What stream `id` holds, in bytes, as compared with subscriberQueueBytes: its own queue (bytes
   * + QUEUED_FRAME_OVERHEAD_BYTES per entry: a frame, or QUEUE_MERGE_FRAMES merged), the writes
   * its sink has not handed on (SINK_WRITE_OVERHEAD_BYTES each) and the sink's writableLength.
   * 0 for an unknown stream.
   */
  heldBytes(id: number): number {
    const sub = this.#subscribers.get(id);
    return sub === undefined ? 0 : this.#held(sub);
  }

  #held(sub: Subscriber): number {
    return sub.queue.held();
  }

  stats(): { connections: number; channels: number; byKind: Record<StreamKind, number> } {
    return {
      connections: this.#subscribers.size,
      channels: this.#channels.size,
      byKind: { ...this.#byKind },
    };
  }

  /** Bytes of the frames waiting in the hub's own stream queues (for their sink's 'drain'). */
  queuedBytes(): number {
    return this.#queueTotals.bytes;
  }

  /** Drain: write a 'retry:' hint to every stream, end them all, stop timers. Later subscribes
   * get the same hint and are ended at once; reserve() refuses new streams. */
  closeAll(retryMs: number): void {
    this.#draining = true;
    this.#admission.draining = true;
    this.#stopTimers();
    this.#retryFrame = encodeFrame({ retryMs });
    for (const sub of this.#subscribers.values()) this.#end(sub, this.#retryFrame);
  }

  /** Applies reloadable options (limits, intervals, history bounds).
   * @throws ConfigError for a negative or non-finite value (nothing is applied then). */
  reconfigure(options: HubTunables): void {
    checkHubTunables(options);
    const previous = this.#opts;
    const next = { ...previous };
    for (const key of TUNABLE_KEYS) {
      const value = options[key];
      if (value !== undefined) next[key] = value;
    }
    this.#opts = next;
    if (next.retryMs !== previous.retryMs && !this.#draining) {
      this.#retryFrame = encodeFrame({ retryMs: next.retryMs });
    }
    if (
      !this.#draining &&
      (next.heartbeatIntervalMs !== previous.heartbeatIntervalMs ||
        next.sweepIntervalMs !== previous.sweepIntervalMs)
    ) {
      this.#stopTimers();
      this.#startTimers();
    }
    if (
      next.historySize < previous.historySize ||
      next.historyMaxAgeMs !== previous.historyMaxAgeMs
    ) {
      const now = this.#now();
      for (const channel of this.#channels.values()) {
        channel.history.trimTo(next.historySize);
        if (next.historyMaxAgeMs > 0) channel.history.evictExpired(now, next.historyMaxAgeMs);
        this.#maybeDelete(channel);
      }
    }
  }

  #deliver(
    channels: readonly string[],
    seq: number,
    id: string,
    frame: SseFrame,
    publisherId: string | undefined,
    record: EventRecord,
  ): number {
    const now = this.#now();
    const { historySize, historyMaxAgeMs } = this.#opts;
    let delivered = 0;
    const deliver = (sub: Subscriber, bytes: Buffer): void => {
      const first = sub.lastSeq !== seq;
      sub.lastSeq = seq;
      if (this.#queueBounded(sub, bytes)) {
        if (first) delivered++;
        sub.lastEventAt = now;
      }
    };
    const { socket } = record;
    for (const [rank, name] of channels.entries()) {
      let channel = this.#channels.get(name);
      if (channel === undefined) {
        // Nobody listens and nothing is kept: only remember that this seq is gone.
        if (historySize === 0) {
          this.#tombstones.bury(name, seq, now);
          continue;
        }
        channel = this.#channel(name);
      }
      frame.id = `${id}@${name}`;
      const bytes = encodeFrame(frame);
      if (historyMaxAgeMs > 0) channel.history.evictExpired(now, historyMaxAgeMs);
      const entry: HistoryEntry = { seq, time: now, publisherId, rank, frame: bytes, record };
      channel.history.push(entry, historySize);
      // A private Mercure update reaches askr streams only where the app authorized them.
      const askrMay = !record.privateField || isPrivateChannel(name);
      for (const sub of channel.subscribers) {
        if (sub.view !== undefined) {
          // A Mercure stream gets ONE frame per event (its id names no channel).
          if (sub.lastSeq !== seq && (!record.private || sub.view.mayRead(channels))) {
            deliver(sub, this.#mercureFrame(record));
          }
          continue;
        }
        // An askr stream gets this channel's frame (issue 12: Echo dispatches by the `@<channel>`
        // of the id), unless it is the publisher's own stream (toOthers, whisper).
        if (!askrMay || (socket !== undefined && sub.socketId === socket)) continue;
        if (sub.grip && record.raw === true) {
          // GRIP http-stream content is the stream's own bytes, once per event; none for none.
          if (sub.lastSeq === seq) continue;
          if (record.data.length > 0) deliver(sub, record.data);
          else sub.lastSeq = seq;
        } else deliver(sub, bytes);
      }
      this.#maybeDelete(channel);
    }
    for (const sub of this.#patternSubs) {
      if (sub.lastSeq === seq || !sub.view?.selects(channels)) continue;
      if (!record.private || sub.view.mayRead(channels)) deliver(sub, this.#mercureFrame(record));
    }
    return delivered;
  }

  /** The event as Mercure streams get it: encoded once, shared by all of them. */
  #mercureFrame(record: EventRecord): Buffer {
    if (record.mercureFrame !== undefined) return record.mercureFrame;
    const frame: SseFrame = {
      id: record.mercureId ?? mercureEventId(this.#epoch, record.seq),
      data: record.data,
    };
    if (record.event !== undefined) frame.event = record.event;
    if (record.retryMs !== undefined) frame.retryMs = record.retryMs;
    record.mercureFrame = encodeFrame(frame);
    return record.mercureFrame;
  }

  /**
   * Plans a Mercure stream's resume from `lastEventId` (a Mercure id, `earliest`, or an askr id):
   * every kept event after it that the view selects and may read, in hub order, within the
   * stream's queue bound; the anchor is the id itself when found and nothing after it is gone,
   * else `earliest`. Synchronous: call it, write the head, subscribe, in one turn.
   */
  planTopicReplay(view: TopicView, lastEventId: string, shared?: SharedHistory): TopicReplay {
    const channels: Channel[] = [];
    if (view.patterns) {
      for (const channel of this.#channels.values()) {
        if (view.selects([channel.name])) channels.push(channel);
      }
    } else {
      for (const name of view.exact) {
        const channel = this.#channels.get(name);
        if (channel !== undefined) channels.push(channel);
      }
    }
    let afterSeq = -1;
    let found = false;
    if (lastEventId !== 'earliest') {
      const seq = this.#seqOfMercureId(lastEventId);
      if (seq !== null) {
        afterSeq = seq;
        found = true;
      }
    }
    // Events after afterSeq that are gone: evicted from a selected channel, or (cluster) from
    // before this node joined the id space and not in the shared history fetched for them.
    let gap = found && afterSeq + 1 < this.#coverageFrom;
    const records = new Map<number, EventRecord>();
    if (gap && shared !== undefined && shared.afterSeq === afterSeq && !view.patterns) {
      gap = view.exact.some((name) => shared.gaps.has(name));
      this.#sharedRecords(shared, records);
    }
    for (const channel of channels) {
      if (found && channel.history.evictedMaxSeq > afterSeq) gap = true;
      for (const entry of channel.history.since(afterSeq)) {
        if (entry.record !== undefined) records.set(entry.seq, entry.record);
      }
    }
    const frames: Buffer[] = [];
    if (gap) {
      frames.push(this.#lostFrameFor('too_old', lastEventId, true));
      this.#hooks.onLost?.('too_old');
    } else if (!found && lastEventId !== 'earliest') {
      // Not an id this hub knows (another epoch, evicted, never published): everything kept
      // follows, and the client is told that what came before may be gone.
      const own = parseEventId(ownIdPart(lastEventId));
      const reason: LostReason = own !== null && own.epoch !== this.#epoch ? 'epoch' : 'unknown_id';
      frames.push(this.#lostFrameFor(reason, lastEventId, true));
      this.#hooks.onLost?.(reason);
    }
    let budget = this.#opts.subscriberQueueBytes - SINK_WRITE_OVERHEAD_BYTES - 64;
    for (const frame of frames) budget -= frame.length;
    const ordered = [...records.values()].sort((a, b) => a.seq - b.seq);
    const chosen: Buffer[] = [];
    let truncated = false;
    // Newest first within the bound: a client that fell far behind gets the latest events.
    for (let i = ordered.length - 1; i >= 0; i--) {
      const record = ordered[i] as EventRecord;
      if (record.private && !view.mayRead(record.channels)) continue;
      const bytes = this.#mercureFrame(record);
      if (bytes.length > budget) {
        truncated = true;
        break;
      }
      budget -= bytes.length;
      chosen.push(bytes);
    }
    if (truncated && !gap) {
      frames.push(this.#lostFrameFor('too_old', lastEventId, true));
      this.#hooks.onLost?.('too_old');
    }
    chosen.reverse();
    frames.push(...chosen);
    this.#hooks.onReplay?.(chosen.length);
    return { frames, anchor: found && !gap && !truncated ? lastEventId : 'earliest' };
  }

  /** Records of the cluster's shared history this node did not see (before coverageFrom). */
  #sharedRecords(shared: SharedHistory, into: Map<number, EventRecord>): void {
    const topics = new Map<number, string[]>();
    for (const [name, entries] of shared.entries) {
      for (const e of entries) {
        // The shared history starts at the resumed event itself (askr per-channel resumes).
        if (e.seq <= shared.afterSeq) continue;
        if (e.seq >= this.#coverageFrom) break;
        const list = topics.get(e.seq);
        if (list !== undefined) {
          list.push(name);
          continue;
        }
        const channels = [name];
        topics.set(e.seq, channels);
        const privateField = e.topicMeta?.private === true;
        into.set(e.seq, {
          seq: e.seq,
          // Completed as the other topics' entries of the same event are read.
          channels,
          data: e.data,
          event: e.event,
          privateField,
          get private(): boolean {
            return privateField || channels.some(isPrivateChannel);
          },
          mercureId: e.topicMeta?.id,
          retryMs: e.topicMeta?.retryMs,
          ...(e.raw === true ? { raw: true } : {}),
        });
      }
    }
  }

  /** The seq a Mercure resume id names when it is one of ours (urn:askr: or askr form); else null. */
  ownSeqOf(id: string): number | null {
    const own = parseEventId(ownIdPart(id));
    return own !== null && own.epoch === this.#epoch && own.seq <= this.#seq ? own.seq : null;
  }

  /** The seq of the earliest kept event with this Mercure id (ours or the publisher's). */
  #seqOfMercureId(id: string): number | null {
    const own = parseEventId(ownIdPart(id));
    if (own !== null && own.epoch === this.#epoch && own.seq <= this.#seq) return own.seq;
    let best: number | null = null;
    // Ids are cursors into the hub-wide sequence: the event may be on a topic not selected.
    for (const channel of this.#channels.values()) {
      for (const entry of channel.history.since(-1)) {
        if (entry.record?.mercureId === id && (best === null || entry.seq < best)) best = entry.seq;
      }
    }
    return best;
  }

  /** Appends the replay (or askr:lost) for `lastEventId` to `parts`, the stream's first write. */
  #replay(
    sub: Subscriber,
    lastEventId: string,
    parts: Buffer[],
    shared: SharedHistory | undefined,
  ): void {
    const parsed = parseEventId(lastEventId);
    if (parsed === null) return this.#lost(parts, 'unknown_id', lastEventId);
    if (parsed.epoch !== this.#epoch) return this.#lost(parts, 'epoch', lastEventId);
    if (parsed.seq > this.#seq) return this.#lost(parts, 'unknown_id', lastEventId);
    const needsShared = this.#needsShared(parsed);
    const sources: ReplaySource[] = sub.channels.map((name) => ({
      name,
      history: needsShared
        ? mergeSharedHistory({
            channel: name,
            local: this.#channel(name).history,
            afterSeq: parsed.seq,
            coverageFrom: this.#coverageFrom,
            epoch: this.#epoch,
            shared,
            socketId: sub.socketId,
          })
        : this.#channel(name).history,
    }));
    // What is left of the bound once the first write (one sink entry) and a possible askr:lost
    // frame are in: the replay must not make a reconnecting client too slow at once.
    const lost = this.#lostFrame('too_old', lastEventId);
    let held = this.#held(sub) + SINK_WRITE_OVERHEAD_BYTES + lost.length;
    for (const part of parts) held += part.length;
    // As live: a private Mercure update goes to askr streams on private-* / presence-* channels
    // only, and nothing the stream's own socket published.
    const { socketId } = sub;
    const plan = planReplay(
      sources,
      replayCursor(sources, parsed.seq, parsed.channel),
      this.#opts.subscriberQueueBytes - held,
      (entry, source) =>
        (entry.record?.privateField === true && !isPrivateChannel(source.name)) ||
        (socketId !== undefined && entry.record?.socket === socketId),
    );
    if (plan.tooOld) this.#lost(parts, 'too_old', lastEventId, lost);
    let rawSeq = -1;
    for (const entry of plan.entries) {
      // A GRIP hold replays GRIP content as the raw bytes it got live (once per event).
      const raw = sub.grip && entry.record?.raw === true;
      if (!raw) parts.push(entry.frame);
      else if (entry.seq !== rawSeq && entry.record.data.length > 0) parts.push(entry.record.data);
      rawSeq = raw ? entry.seq : rawSeq;
    }
    if (plan.entries.length > 0) sub.lastEventAt = this.#now();
    this.#hooks.onReplay?.(plan.entries.length);
  }

  /** askr:lost carries the current position as its id, so the next reconnect starts from here. */
  #lostFrame(reason: LostReason, lastEventId: string): Buffer {
    return this.#lostFrameFor(reason, lastEventId, false);
  }

  /** askr:lost, with the position as a Mercure id (an IRI) for Mercure streams. */
  #lostFrameFor(reason: LostReason, lastEventId: string | null, mercure: boolean): Buffer {
    const data = JSON.stringify({
      reason,
      lastEventId: lastEventId?.slice(0, LOST_ID_MAX_CHARS) ?? null,
    });
    const id = mercure
      ? mercureEventId(this.#epoch, this.#seq)
      : formatEventId(this.#epoch, this.#seq);
    return encodeFrame({ id, event: 'askr:lost', data });
  }

  #lost(
    parts: Buffer[],
    reason: LostReason,
    lastEventId: string,
    frame = this.#lostFrame(reason, lastEventId),
  ): void {
    parts.push(frame);
    this.#hooks.onLost?.(reason);
    this.#logger.debug(
      { reason, lastEventId: lastEventId.slice(0, LOST_ID_MAX_CHARS) },
      'SSE replay gap',
    );
  }

  #closeChannels(channels: readonly string[]): number {
    let closed = 0;
    for (const name of channels) {
      const channel = this.#channels.get(name);
      if (channel === undefined) continue;
      for (const sub of [...channel.subscribers]) {
        this.#end(sub, undefined);
        closed++;
      }
    }
    return closed;
  }

  /** #write, then the queue bound: a stream over it is dropped. True if the stream lives on. */
  #writeBounded(sub: Subscriber, chunk: Buffer): boolean {
    if (!this.#write(sub, chunk)) return false;
    if (this.#held(sub) <= this.#opts.subscriberQueueBytes) return true;
    this.#dropSlow(sub);
    return false;
  }

  /**
   * Queues a published frame; the stream is written once at the end of this event-loop turn
   * (#flushTurn), with every frame the turn's publishes queued for it. Issue 13: written at once,
   * each publish cost one writev per subscriber (~10 µs each with 1,000 subscribers: ~100
   * publishes/s over HTTP), and node:http uncorks the publisher's 202 only after the subscribers'
   * writes. No delay is added: setImmediate runs after the I/O callbacks of the same turn.
   * True if the stream lives on (with the default `defer`, a write failing at the turn's end drops
   * the stream then).
   */
  #queueBounded(sub: Subscriber, chunk: Buffer): boolean {
    if (sub.closed) return false;
    if (sub.sink.destroyed) {
      this.#remove(sub);
      return false;
    }
    const busy = sub.queue.sinkBusy();
    // Alone, the frame is what was written at once before: the bound applies when it is written
    // (#flush); frames queued behind another count now.
    const alone = !busy && sub.queue.frames === 0;
    sub.queue.enqueue(chunk);
    if (!alone && this.#held(sub) > this.#opts.subscriberQueueBytes) {
      this.#dropSlow(sub);
      return false;
    }
    // A sink still holding a write of ours flushes on its callback or 'drain' instead.
    if (!busy) {
      this.#turnPending.add(sub);
      if (!this.#turnScheduled) {
        this.#turnScheduled = true;
        this.#defer(() => {
          this.#flushTurn();
        });
      }
    }
    return !sub.closed; // a synchronous `defer` (tests) has written it already
  }

  /** Writes what this turn's publishes queued: one write per stream (#queueBounded). */
  #flushTurn(): void {
    this.#turnScheduled = false;
    for (const sub of this.#turnPending) {
      if (!sub.queue.sinkBusy()) this.#guard('stream write', () => this.#flush(sub));
    }
    this.#turnPending.clear();
  }

  /**
   * Writes without ever waiting. A frame goes to the sink only when the sink holds no write of
   * this stream (its last one was handed on) and is not over its high-water mark; otherwise it
   * waits in the stream's own queue, in order, until that write is handed on (or 'drain'), then
   * everything queued goes out in ONE write. A queued frame costs a reference to the shared
   * Buffer (~9 B); a write to a chunked response ~300 B of bookkeeping. A client that keeps up
   * gets one write per event (events are published one per tick); a burst within one tick, or a
   * client that is behind, gets them coalesced, with no delay added (the response is corked
   * until the end of the tick anyway). True if the stream lives on.
   */
  #write(sub: Subscriber, chunk: Buffer): boolean {
    if (sub.closed) return false;
    const { sink } = sub;
    if (sink.destroyed) {
      this.#remove(sub);
      return false;
    }
    if (sub.queue.mustQueue()) {
      sub.queue.enqueue(chunk);
      return true;
    }
    return this.#sinkWrite(sub, chunk);
  }

  /** Everything queued goes out in ONE write; the queue's memory becomes the sink's (counted in
   * its writableLength). Called when the sink handed on its last write, and on 'drain'. */
  #flush(sub: Subscriber): void {
    if (sub.closed || sub.queue.frames === 0) return;
    if (sub.sink.destroyed) {
      this.#remove(sub);
      return;
    }
    const chunk = sub.queue.take();
    if (chunk !== undefined && this.#sinkWrite(sub, chunk)) {
      if (this.#held(sub) > this.#opts.subscriberQueueBytes) this.#dropSlow(sub);
    }
  }

  #sinkWrite(sub: Subscriber, chunk: Buffer): boolean {
    const { sink } = sub;
    try {
      sub.queue.writeToSink(chunk);
      return true;
    } catch (err) {
      this.#logger.warn({ err: toError(err) }, 'SSE write failed; stream dropped');
      this.#remove(sub);
      this.#destroySink(sink);
      return false;
    }
  }

  #dropSlow(sub: Subscriber): void {
    this.#remove(sub);
    this.#destroySink(sub.sink);
    this.#hooks.onSlowConsumer?.();
    this.#slowPending++;
    this.#logSlow(this.#now());
  }

  /** At most one warning per SLOW_LOG_INTERVAL_MS, with the count since the last one. */
  #logSlow(now: number): void {
    if (this.#slowPending === 0 || now - this.#slowLoggedAt < SLOW_LOG_INTERVAL_MS) return;
    this.#logger.warn(
      { disconnected: this.#slowPending, subscriberQueueBytes: this.#opts.subscriberQueueBytes },
      'slow SSE subscribers disconnected (queue over sse.subscriber_queue_size)',
    );
    this.#slowPending = 0;
    this.#slowLoggedAt = now;
  }

  /** Removes the stream, then writes what its queue holds and `finalFrame` (if any), and ends
   * the sink. */
  #end(sub: Subscriber, finalFrame: Buffer | undefined): void {
    if (sub.closed) return;
    const queued = sub.queue.take();
    this.#remove(sub);
    const last =
      queued === undefined
        ? finalFrame
        : finalFrame === undefined
          ? queued
          : Buffer.concat([queued, finalFrame]);
    this.#endSink(sub.sink, last);
  }

  #endSink(sink: SseSink, finalFrame: Buffer | undefined): void {
    if (sink.destroyed) return;
    try {
      if (finalFrame !== undefined) sink.write(finalFrame);
      sink.end();
    } catch (err) {
      this.#logger.warn({ err: toError(err) }, 'SSE stream end failed; destroying it');
      this.#destroySink(sink);
    }
  }

  #destroySink(sink: SseSink): void {
    try {
      sink.destroy();
    } catch (err) {
      // Nothing more can be done for this stream; it is already unsubscribed.
      this.#logger.warn({ err: toError(err) }, 'SSE stream destroy failed');
    }
  }

  /** Forgets the stream; its queue is released at once (a dropped stream holds nothing). */
  #remove(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.queue.clear();
    this.#subscribers.delete(sub.id);
    if (sub.view !== undefined) {
      this.#patternSubs.delete(sub);
      clearTimeout(sub.expiryTimer);
    }
    for (const name of sub.channels) {
      const channel = this.#channels.get(name);
      if (channel === undefined) continue;
      channel.subscribers.delete(sub);
      this.#maybeDelete(channel);
    }
    this.#admission.leave(sub.clientIp);
    this.#byKind[sub.kind]--;
    this.#hooks.onSubscribersChanged?.();
  }

  /** The channel's state, created (from its tombstone, if any) when absent. */
  #channel(name: string): Channel {
    let channel = this.#channels.get(name);
    if (channel === undefined) {
      const history = new EventHistory(this.#tombstones.exhume(name));
      channel = { name, subscribers: new Set(), history };
      this.#channels.set(name, channel);
    }
    return channel;
  }

  /** A channel nobody listens to with nothing to replay costs nothing but a tombstone. */
  #maybeDelete(channel: Channel): void {
    if (channel.subscribers.size > 0 || channel.history.size > 0) return;
    if (this.#channels.get(channel.name) !== channel) return;
    this.#channels.delete(channel.name);
    this.#tombstones.bury(channel.name, channel.history.evictedMaxSeq, this.#now());
  }

  #startTimers(): void {
    const { heartbeatIntervalMs, sweepIntervalMs } = this.#opts;
    if (heartbeatIntervalMs > 0) {
      this.#heartbeatTimer = setInterval(
        () => this.#guard('heartbeat', () => this.#ping()),
        heartbeatIntervalMs,
      );
      this.#heartbeatTimer.unref();
    }
    if (sweepIntervalMs > 0) {
      this.#sweepTimer = setInterval(
        () => this.#guard('sweep', () => this.#sweep()),
        sweepIntervalMs,
      );
      this.#sweepTimer.unref();
    }
  }

  #stopTimers(): void {
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#sweepTimer);
    this.#heartbeatTimer = undefined;
    this.#sweepTimer = undefined;
  }

  /** A stream with frames waiting needs no keep-alive: its bytes are already on their way. */
  #ping(): void {
    for (const sub of this.#subscribers.values()) {
      if (sub.queue.frames === 0) this.#writeBounded(sub, PING_FRAME);
    }
  }

  /** The coarse timer: history age, tombstone expiry, stream lifetime and idleness. */
  #sweep(): void {
    const now = this.#now();
    const { historyMaxAgeMs, maxLifetimeMs, idleTimeoutMs } = this.#opts;
    if (historyMaxAgeMs > 0) {
      for (const channel of this.#channels.values()) {
        channel.history.evictExpired(now, historyMaxAgeMs);
        this.#maybeDelete(channel);
      }
    }
    this.#tombstones.expire(now);
    this.#merger.forget();
    if (maxLifetimeMs > 0 || idleTimeoutMs > 0) {
      for (const sub of this.#subscribers.values()) {
        const expired =
          (maxLifetimeMs > 0 && now - sub.connectedAt >= maxLifetimeMs) ||
          (idleTimeoutMs > 0 && now - sub.lastEventAt >= idleTimeoutMs);
        // The retry: hint makes EventSource come back soon and resume with Last-Event-ID.
        if (expired) this.#end(sub, this.#retryFrame);
      }
    }
    this.#logSlow(now);
  }

  #guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#logger.error({ err: toError(err) }, `SSE hub ${what} failed`);
    }
  }
}

/**
 * Validates channel names and drops duplicates, keeping the first occurrence. `channel`: the askr
 * charset; `topic` (Mercure topics, cluster deliveries): any text without control characters,
 * which is all the `id:` line an askr frame puts it in needs.
 */
function checkChannels(channels: readonly string[], kind: 'channel' | 'topic'): readonly string[] {
  if (channels.length === 0) {
    throw new SidecarError(ErrorCodes.BAD_REQUEST, 'no channel given');
  }
  for (const name of channels) {
    const problem =
      kind === 'channel'
        ? channelNameProblem(name, ANY_LENGTH)
        : name === '' || TOPIC_FORBIDDEN.test(name)
          ? `topic ${JSON.stringify(name.slice(0, 64))} is empty or has a control character`
          : null;
    if (problem !== null) throw new SidecarError(ErrorCodes.BAD_REQUEST, problem);
  }
  return channels.length === 1 ? channels : [...new Set(channels)];
}
