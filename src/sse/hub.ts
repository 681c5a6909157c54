/**
 * The in-process SSE hub: channels, subscribers (streams), publish fan-out, replay, limits.
 * Invariants: every event is encoded once per channel and the same Buffer goes to every
 * subscriber of that channel; a publish never waits (a subscriber whose queue is over the bound
 * is destroyed); a stream gets each event at most once; two timers in all (heartbeat, sweep),
 * both unref'd; nothing throws out of a timer or a sink event handler.
 *
 *   publish ──▶ seq++ ──▶ per channel: encode `id: <epoch>-<seq>@<channel>` ──▶ history ring
 *                                          └──▶ write to each subscriber (skip if seen) ──▶ slow?
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { channelNameProblem } from '../broadcast/channel-name.ts';
import { ConfigError, ErrorCodes, SidecarError, toError } from '../errors.ts';
import {
  ChannelTombstones,
  EventHistory,
  formatEventId,
  parseEventId,
  planReplay,
  type HistoryEntry,
} from './event-history.ts';
import { encodeFrame, PING_FRAME, type SseFrame } from './sse-encoder.ts';

/** Who published. */
export type IngressKind = 'datagram' | 'http' | 'grip' | 'internal';
/** `hold`: a PHP response held open; `events`: the events endpoint. */
export type StreamKind = 'hold' | 'events';

export interface HubOptions {
  /** Events kept per channel for replay (0: no history, every reconnect after a miss is lost). */
  historySize: number;
  /** Oldest event kept for replay, ms (0: no age bound). */
  historyMaxAgeMs: number;
  /** A sink whose writableLength exceeds this many bytes is disconnected (slow consumer). */
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
  /** Per published event: subscribers written, and publish-to-written lag. */
  onDeliver?(count: number, lagMs: number): void;
  onSlowConsumer?(): void;
  /** Per stream that sent a Last-Event-ID of this epoch: events replayed (possibly 0). */
  onReplay?(events: number): void;
  onLost?(reason: LostReason): void;
  onSubscribersChanged?(): void;
}

export type LostReason = 'too_old' | 'epoch' | 'unknown_id';

/** What the hub writes to. A node:http ServerResponse satisfies it. */
export interface SseSink {
  write(chunk: Buffer): boolean;
  end(): void;
  destroy(error?: Error): void;
  readonly writableLength: number;
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
}

export interface PublishInput {
  channels: readonly string[];
  data: Buffer;
  event?: string;
  /** The publisher's own id: a second publish with an id still in history is dropped. */
  publisherId?: string;
  /** Pushpin's close action: after the event (if data is non-empty), end every stream. */
  close?: boolean;
  ingress: IngressKind;
}

export interface PublishResult {
  /** `<epoch>-<seq>`, or null when deduplicated or nothing was sent. */
  id: string | null;
  /** Streams the event was written to. */
  subscribers: number;
  /** Streams ended by a close action. */
  closed: number;
}

export interface SubscribeInput {
  sink: SseSink;
  channels: readonly string[];
  lastEventId?: string | null;
  clientIp: string;
  kind: StreamKind;
  /** Bytes written first, after `retry:` (PHP's body for holds). */
  initial?: Buffer;
}

type TunableKey = Exclude<keyof HubOptions, 'logger' | 'hooks' | 'epoch' | 'now' | 'state'>;
type Tunables = Record<TunableKey, number>;

interface Subscriber {
  readonly id: number;
  readonly sink: SseSink;
  readonly channels: readonly string[];
  readonly clientIp: string;
  readonly kind: StreamKind;
  readonly connectedAt: number;
  lastEventAt: number;
  /** Seq of the last event written: a multi-channel publish reaches a stream once. */
  lastSeq: number;
  closed: boolean;
}

interface Channel {
  readonly name: string;
  readonly subscribers: Set<Subscriber>;
  readonly history: EventHistory;
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
/** The client's Last-Event-ID is echoed in askr:lost; a query parameter could be long. */
const LOST_ID_MAX_CHARS = 256;
/** Length limits are the ingress's (it has the config); the hub guards the charset only, since
 * channel names are written into `id:` lines. */
const ANY_LENGTH = Number.MAX_SAFE_INTEGER;
const EVENT_FORBIDDEN = /[\r\n]/;
const noop = (): void => {};

function checkTunables(values: Partial<Tunables>): void {
  for (const key of TUNABLE_KEYS) {
    const value = values[key];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new ConfigError(`hub option ${key} must be a non-negative number, got ${value}`);
    }
  }
}

export class Hub {
  /** Identifies this instance in event ids; a Last-Event-ID of another epoch is unknown. */
  readonly epoch: string;
  readonly #logger: Logger;
  readonly #hooks: HubHooks;
  readonly #now: () => number;
  #opts: Tunables;
  readonly #channels = new Map<string, Channel>();
  readonly #subscribers = new Map<number, Subscriber>();
  readonly #perIp = new Map<string, number>();
  readonly #byKind: Record<StreamKind, number> = { hold: 0, events: 0 };
  readonly #tombstones = new ChannelTombstones(TOMBSTONE_TTL_MS, TOMBSTONE_MAX);
  #seq = 0;
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
    this.epoch = epoch;
    this.#logger = options.logger;
    this.#hooks = options.hooks ?? {};
    this.#now = options.now ?? Date.now;
    const opts = { sweepIntervalMs: 1000 } as Tunables;
    for (const key of TUNABLE_KEYS) {
      const value = options[key];
      if (value !== undefined) opts[key] = value;
    }
    checkTunables(opts);
    this.#opts = opts;
    this.#retryFrame = encodeFrame({ retryMs: opts.retryMs });
    if (options.state !== undefined) this.#importState(options.state);
    this.#startTimers();
  }

  /** A copy of the replay state, for sse.state_file (written on graceful shutdown). */
  exportState(): HubState {
    return {
      epoch: this.epoch,
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

  /** Returns a reason string if a new stream from this IP would exceed a limit, else null. */
  admissionProblem(clientIp: string): string | null {
    if (this.#draining) return 'the sidecar is shutting down';
    const { maxConnections, maxConnectionsPerIp } = this.#opts;
    if (this.#subscribers.size >= maxConnections) {
      return `too many streams: ${maxConnections} (sse.max_connections)`;
    }
    if ((this.#perIp.get(clientIp) ?? 0) >= maxConnectionsPerIp) {
      return `too many streams from ${clientIp}: ${maxConnectionsPerIp} (sse.max_connections_per_ip)`;
    }
    return null;
  }

  /**
   * Publishes one event to `channels` (duplicates ignored). Never blocks on slow subscribers.
   * @throws SidecarError(SSE_ENCODE, 400) for CR/LF in `event`; SidecarError(BAD_REQUEST, 400)
   *   for no channel or a channel name outside the channel charset.
   */
  publish(input: PublishInput): PublishResult {
    const { event, data, publisherId } = input;
    if (event !== undefined && EVENT_FORBIDDEN.test(event)) {
      throw new SidecarError(ErrorCodes.SSE_ENCODE, 'SSE event name must not contain CR or LF', {
        status: 400,
      });
    }
    const channels = checkChannels(input.channels);
    this.#hooks.onPublish?.(input.ingress, channels.length);
    let id: string | null = null;
    let delivered = 0;
    if (!(input.close === true && data.length === 0)) {
      if (
        publisherId !== undefined &&
        channels.some((name) => this.#channels.get(name)?.history.hasPublisherId(publisherId))
      ) {
        return { id: null, subscribers: 0, closed: 0 };
      }
      const started = performance.now();
      const seq = ++this.#seq;
      id = formatEventId(this.epoch, seq);
      const frame: SseFrame = { data };
      if (event !== undefined) frame.event = event;
      delivered = this.#deliver(channels, seq, id, frame, publisherId);
      this.#hooks.onDeliver?.(delivered, performance.now() - started);
    }
    const closed = input.close === true ? this.#closeChannels(channels) : 0;
    return { id, subscribers: delivered, closed };
  }

  /**
   * Starts a stream: writes `retry:`, `initial`, the replay (or askr:lost), then live events.
   * The stream is removed when the sink emits 'close'. End it with the returned close(), never
   * with sink.end() directly (the hub would write to an ended response).
   * @throws SidecarError(BAD_REQUEST, 400) for no channel or an invalid channel name.
   */
  subscribe(input: SubscribeInput): { id: number; close(): void } {
    const channels = checkChannels(input.channels);
    const { sink } = input;
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
      clientIp: input.clientIp,
      kind: input.kind,
      connectedAt: now,
      lastEventAt: now,
      lastSeq: this.#seq,
      closed: false,
    };
    this.#subscribers.set(id, sub);
    this.#perIp.set(sub.clientIp, (this.#perIp.get(sub.clientIp) ?? 0) + 1);
    this.#byKind[sub.kind]++;
    for (const name of channels) this.#channel(name).subscribers.add(sub);
    sink.once('close', () => this.#guard('stream close', () => this.#remove(sub)));
    this.#hooks.onSubscribersChanged?.();

    // Initial bytes and replay are checked against the queue bound once, at the end: the replay
    // is planned to fit what is left of it.
    this.#write(sub, this.#retryFrame, false);
    if (input.initial !== undefined && input.initial.length > 0) {
      this.#write(sub, input.initial, false);
    }
    const { lastEventId } = input;
    // sub.closed: a write above failed and the stream is gone (its channels may be too).
    if (!sub.closed && lastEventId !== undefined && lastEventId !== null && lastEventId !== '') {
      this.#replay(sub, lastEventId);
    }
    if (!sub.closed && sink.writableLength > this.#opts.subscriberQueueBytes) this.#dropSlow(sub);
    return { id, close: () => this.#end(sub, undefined) };
  }

  stats(): { connections: number; channels: number; byKind: Record<StreamKind, number> } {
    return {
      connections: this.#subscribers.size,
      channels: this.#channels.size,
      byKind: { ...this.#byKind },
    };
  }

  /** Drain: write a 'retry:' hint to every stream, end them all, stop timers. Later subscribes
   * get the same hint and are ended at once; admissionProblem() refuses new streams. */
  closeAll(retryMs: number): void {
    this.#draining = true;
    this.#stopTimers();
    this.#retryFrame = encodeFrame({ retryMs });
    for (const sub of this.#subscribers.values()) this.#end(sub, this.#retryFrame);
  }

  /** Applies reloadable options (limits, intervals, history bounds).
   * @throws ConfigError for a negative or non-finite value (nothing is applied then). */
  reconfigure(
    options: Partial<Omit<HubOptions, 'logger' | 'hooks' | 'epoch' | 'now' | 'state'>>,
  ): void {
    checkTunables(options);
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
  ): number {
    const now = this.#now();
    const { historySize, historyMaxAgeMs } = this.#opts;
    let delivered = 0;
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
      const entry: HistoryEntry = { seq, time: now, publisherId, rank, frame: bytes };
      channel.history.push(entry, historySize);
      for (const sub of channel.subscribers) {
        if (sub.lastSeq === seq) continue;
        sub.lastSeq = seq;
        if (this.#write(sub, bytes, true)) {
          delivered++;
          sub.lastEventAt = now;
        }
      }
      this.#maybeDelete(channel);
    }
    return delivered;
  }

  #replay(sub: Subscriber, lastEventId: string): void {
    const parsed = parseEventId(lastEventId);
    if (parsed === null) return this.#lost(sub, 'unknown_id', lastEventId);
    if (parsed.epoch !== this.epoch) return this.#lost(sub, 'epoch', lastEventId);
    if (parsed.seq > this.#seq) return this.#lost(sub, 'unknown_id', lastEventId);
    const histories = sub.channels.map((name) => this.#channel(name).history);
    const budget = this.#opts.subscriberQueueBytes - sub.sink.writableLength;
    const plan = planReplay(histories, parsed.seq, budget);
    if (plan.tooOld) this.#lost(sub, 'too_old', lastEventId);
    for (const entry of plan.entries) this.#write(sub, entry.frame, false);
    if (plan.entries.length > 0) sub.lastEventAt = this.#now();
    this.#hooks.onReplay?.(plan.entries.length);
  }

  /** askr:lost carries the current position as its id, so the next reconnect starts from here. */
  #lost(sub: Subscriber, reason: LostReason, lastEventId: string): void {
    const data = JSON.stringify({ reason, lastEventId: lastEventId.slice(0, LOST_ID_MAX_CHARS) });
    const frame = encodeFrame({
      id: formatEventId(this.epoch, this.#seq),
      event: 'askr:lost',
      data,
    });
    this.#write(sub, frame, false);
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

  /** Writes without ever waiting; `check` enforces the queue bound. True if the stream lives on. */
  #write(sub: Subscriber, chunk: Buffer, check: boolean): boolean {
    if (sub.closed) return false;
    const { sink } = sub;
    if (sink.destroyed) {
      this.#remove(sub);
      return false;
    }
    try {
      sink.write(chunk);
    } catch (err) {
      this.#logger.warn({ err: toError(err) }, 'SSE write failed; stream dropped');
      this.#remove(sub);
      this.#destroySink(sink);
      return false;
    }
    if (check && sink.writableLength > this.#opts.subscriberQueueBytes) {
      this.#dropSlow(sub);
      return false;
    }
    return true;
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

  /** Removes the stream, then writes `finalFrame` (if any) and ends the sink. */
  #end(sub: Subscriber, finalFrame: Buffer | undefined): void {
    if (sub.closed) return;
    this.#remove(sub);
    this.#endSink(sub.sink, finalFrame);
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

  #remove(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.#subscribers.delete(sub.id);
    for (const name of sub.channels) {
      const channel = this.#channels.get(name);
      if (channel === undefined) continue;
      channel.subscribers.delete(sub);
      this.#maybeDelete(channel);
    }
    const left = (this.#perIp.get(sub.clientIp) ?? 1) - 1;
    if (left <= 0) this.#perIp.delete(sub.clientIp);
    else this.#perIp.set(sub.clientIp, left);
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

  #ping(): void {
    for (const sub of this.#subscribers.values()) this.#write(sub, PING_FRAME, true);
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

/** Validates channel names (charset) and drops duplicates, keeping the first occurrence. */
function checkChannels(channels: readonly string[]): readonly string[] {
  if (channels.length === 0) {
    throw new SidecarError(ErrorCodes.BAD_REQUEST, 'no channel given', { status: 400 });
  }
  for (const name of channels) {
    const problem = channelNameProblem(name, ANY_LENGTH);
    if (problem !== null) throw new SidecarError(ErrorCodes.BAD_REQUEST, problem, { status: 400 });
  }
  return channels.length === 1 ? channels : [...new Set(channels)];
}
