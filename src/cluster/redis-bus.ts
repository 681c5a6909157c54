/**
 * The cluster bus on Redis (or Valkey): one publish script gives every event a cluster-wide
 * sequence number, appends it to a capped stream per channel (the shared history) and announces
 * it on one pub/sub channel that every sidecar listens to, all atomically, so every node sees
 * every event once and in the same order. Replay of what a node did not see reads the streams.
 * Invariants: nothing here knows HTTP or SSE frames; a Redis outage never throws into callers
 * that did not ask (state changes are reported through callbacks); binary payloads pass intact.
 *
 *   node A ─EVALSHA publish─▶ Redis: INCR seq; XADD h:<ch> (MAXLEN); HSET last; PUBLISH bus
 *                                  └─▶ every node (A too) ─▶ onEvent(seq order)
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ErrorCodes, SidecarError } from '../errors.ts';
import { parseRedisUrl } from './redis-url.ts';
import type { SharedHistoryEntry } from '../sse/shared-history.ts';
import type { EventFields, TopicMeta } from '../sse/hub.ts';

/** One event as the bus carries it. */
export interface BusEvent {
  /** Cluster-wide sequence number (orders events across channels and nodes). */
  seq: number;
  /** Redis time of the publish, ms since the epoch. */
  time: number;
  /** node_id of the publishing sidecar or relay. */
  origin: string;
  channels: string[];
  event: string | undefined;
  publisherId: string | undefined;
  /** Pushpin's close action: end every stream of these channels after the event. */
  close: boolean;
  data: Buffer;
  /** Mercure fields (private flag, the publisher's id, retry), when it was a Mercure publish. */
  topicMeta: TopicMeta | undefined;
  /** GRIP http-stream content: GRIP holds get `data` as is (isStreamContent in sse/hub.ts). */
  raw: boolean;
  /** The publisher's socket id (toOthers, whisper): the stream with it does not get the event. */
  socket: string | undefined;
}

/** One stored history entry of a channel (the shape the hub merges). */
export type BusHistoryEntry = SharedHistoryEntry;

export interface BusReplay {
  /** Per channel, the entries with seq >= afterSeq (oldest first): the resumed event's own
   * entries too (a client cut between two of its frames needs its later channels). */
  entries: Map<string, BusHistoryEntry[]>;
  /** Channels where an event after afterSeq is gone (trimmed by count or age). */
  gaps: Set<string>;
  /** Channels whose entry of event afterSeq itself is gone (whether it was still due depends on
   * the channel the client resumes from: the hub decides). */
  trimmedAt: Set<string>;
}

export type BusState = 'connecting' | 'up' | 'down';

export interface BusOptions {
  url: string;
  keyPrefix: string;
  nodeId: string;
  /** Entries kept per channel stream (sse.history_size); 0 keeps none. */
  historySize: () => number;
  /** Oldest entry replayed, ms (sse.history_max_age); 0: no age bound. */
  historyMaxAgeMs: () => number;
  onEvent(event: BusEvent): void;
  /** State changes: `up` carries the cluster epoch and the sequence number at (re)connect. */
  onState(state: BusState, info: { epoch?: string; seq?: number; error?: string }): void;
  /** Called for every failed Redis command or protocol error (metrics). */
  onError?(err: Error): void;
}

/** The publish script. ARGV: prefix, maxlen, publisherId, dedupeTtlMs, event, origin, close, data,
 * meta (JSON of the Mercure fields, or ''), raw ('1': GRIP http-stream content), socket (the
 * publisher's socket id, or ''), channels...
 * The header's fields are only ever appended to: a node of the previous version reads the new
 * header (it ignores what follows), and this one reads an old header or entry (raw absent: '0'). */
const PUBLISH_LUA = `
local p = ARGV[1]
local maxlen = tonumber(ARGV[2])
local pid = ARGV[3]
local ttl = tonumber(ARGV[4])
local event = ARGV[5]
local origin = ARGV[6]
local close = ARGV[7]
local data = ARGV[8]
local meta = ARGV[9]
local raw = ARGV[10]
local socket = ARGV[11]
if pid ~= '' then
  if not redis.call('SET', p .. 'pub:' .. pid, '1', 'NX', 'PX', ttl) then return {-1, ''} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local isEvent = not (close == '1' and data == '')
local seq = 0
if isEvent then seq = redis.call('INCR', p .. 'seq') end
local channels = {}
for i = 12, #ARGV do
  local ch = ARGV[i]
  channels[#channels + 1] = ch
  if isEvent then
    if maxlen > 0 then
      redis.call('XADD', p .. 'h:' .. ch, 'MAXLEN', maxlen, seq .. '-0',
        'e', event, 'd', data, 't', now, 'p', pid, 'r', i - 12, 'm', meta, 'g', raw,
        's', socket)
    end
    redis.call('HSET', p .. 'last', ch, seq)
  end
end
local header = cjson.encode({seq, now, origin, pid, event, close, channels, meta, raw, socket})
redis.call('PUBLISH', p .. 'bus', header .. '\\n' .. data)
return {seq, redis.call('GET', p .. 'epoch') or ''}
`;

/** Events kept between SUBSCRIBE and reading the position at (re)connect. */
const EARLY_EVENTS_MAX = 100_000;

export function defaultNodeId(): string {
  return `${hostname()}-${randomBytes(3).toString('hex')}`;
}

export class RedisBus {
  readonly #options: BusOptions;
  readonly #commands: Redis;
  readonly #subscriber: Redis;
  #state: BusState = 'connecting';
  #epoch = '';
  #closed = false;
  #lastError = '';
  readonly #upWaiters: Array<() => void> = [];
  /** Events that arrived between SUBSCRIBE and the position read at (re)connect. */
  #early: BusEvent[] = [];

  constructor(options: BusOptions) {
    this.#options = options;
    const target = parseRedisUrl(options.url);
    const connect = (connectionName: string): Redis =>
      new Redis({
        host: target.host,
        port: target.port,
        db: target.db,
        connectionName,
        lazyConnect: true,
        // Commands fail at once while Redis is away: callers fall back to local delivery.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 7), 10_000),
        // The subscriber re-subscribes by itself after a reconnect.
        autoResubscribe: true,
        ...(target.password === undefined ? {} : { password: target.password }),
        ...(target.username === undefined ? {} : { username: target.username }),
        ...(target.tls ? { tls: {} } : {}),
      });
    this.#commands = connect(`askr:${options.nodeId}`);
    this.#subscriber = connect(`askr-sub:${options.nodeId}`);
    this.#commands.defineCommand('askrPublish', { numberOfKeys: 0, lua: PUBLISH_LUA });
    for (const client of [this.#commands, this.#subscriber]) {
      client.on('error', (err: Error) => {
        this.#lastError = err.message;
        this.#options.onError?.(err);
      });
      client.on('close', () => this.#down());
      client.on('end', () => this.#down());
      client.on('ready', () => {
        void this.#maybeUp();
      });
    }
    this.#subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() !== this.#key('bus')) return;
      const event = decodeBusMessage(message);
      if (event === null) {
        this.#options.onError?.(new Error('malformed bus message'));
        return;
      }
      if (this.#state !== 'up') {
        // Subscribed, position not read yet: kept, and those after the position delivered
        // once up (bounded: the window is one round trip).
        if (this.#early.length < EARLY_EVENTS_MAX) this.#early.push(event);
        return;
      }
      this.#options.onEvent(event);
    });
  }

  get state(): BusState {
    return this.#state;
  }

  get epoch(): string {
    return this.#epoch;
  }

  get lastError(): string {
    return this.#lastError;
  }

  /**
   * Connects both clients. Resolves when up, or after `waitMs` with the bus still trying in the
   * background (never rejects: a Redis outage at start means degraded, not dead).
   */
  async start(waitMs: number): Promise<void> {
    const up = new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.#state === 'up') resolve();
      };
      this.#upWaiters.push(check);
    });
    this.#commands.connect().catch((err: unknown) => this.#noteError(err));
    this.#subscriber.connect().catch((err: unknown) => this.#noteError(err));
    await Promise.race([up, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
  }

  /**
   * Publishes one event. Resolves with its cluster seq (0 for a close action without data) and
   * epoch, or null when `publisherId` was already used within the history age (deduplicated). Rejects (SidecarError CLUSTER) when
   * Redis is not reachable: the caller decides what to do locally.
   */
  async publish(input: EventFields): Promise<{ seq: number; epoch: string } | null> {
    if (this.#state !== 'up') throw this.#unavailable();
    const maxAge = this.#options.historyMaxAgeMs();
    const args: Array<string | Buffer> = [
      this.#options.keyPrefix,
      String(this.#options.historySize()),
      input.publisherId ?? '',
      // A publisher id is remembered as long as the event may be replayed (10 min at least).
      String(Math.max(maxAge, 600_000)),
      input.event ?? '',
      this.#options.nodeId,
      input.close === true ? '1' : '0',
      input.data,
      input.topicMeta === undefined ? '' : JSON.stringify(input.topicMeta),
      input.raw === true ? '1' : '0',
      input.socket ?? '',
      ...input.channels,
    ];
    let reply: unknown;
    try {
      reply = await (
        this.#commands as unknown as {
          askrPublish(...a: Array<string | Buffer>): Promise<unknown>;
        }
      ).askrPublish(...args);
    } catch (err) {
      this.#noteError(err);
      throw this.#unavailable(err);
    }
    const [seq, epoch] = reply as [number, string];
    if (seq === -1) return null;
    return { seq, epoch };
  }

  /**
   * The shared history of `channels` from `afterSeq` on (that event's own entries included), for
   * a client that missed events this node did not see. Rejects (CLUSTER) when Redis is not
   * reachable.
   */
  async history(channels: readonly string[], afterSeq: number): Promise<BusReplay> {
    if (this.#state !== 'up') throw this.#unavailable();
    const pipeline = this.#commands.pipeline();
    for (const ch of channels) {
      pipeline.xrangeBuffer(this.#key(`h:${ch}`), `${afterSeq}-0`, '+');
      pipeline.xinfo('STREAM', this.#key(`h:${ch}`));
      pipeline.hget(this.#key('last'), ch);
    }
    pipeline.time();
    let results: Array<[Error | null, unknown]>;
    try {
      results = (await pipeline.exec()) ?? [];
    } catch (err) {
      this.#noteError(err);
      throw this.#unavailable(err);
    }
    const [, timeReply] = results[results.length - 1] ?? [null, ['0', '0']];
    const [sec, usec] = timeReply as [string, string];
    const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    const maxAge = this.#options.historyMaxAgeMs();
    const replay: BusReplay = { entries: new Map(), gaps: new Set(), trimmedAt: new Set() };
    channels.forEach((ch, i) => {
      const [rangeErr, range] = results[i * 3] ?? [null, []];
      const [infoErr, info] = results[i * 3 + 1] ?? [null, null];
      const [, last] = results[i * 3 + 2] ?? [null, null];
      const lastSeq = last === null || last === undefined ? 0 : Number(last);
      if (rangeErr !== null || infoErr !== null) {
        // No stream (never kept, or removed): a gap only if this channel had events since.
        if (lastSeq > afterSeq) replay.gaps.add(ch);
        else if (lastSeq === afterSeq && afterSeq > 0) replay.trimmedAt.add(ch);
        replay.entries.set(ch, []);
        return;
      }
      const maxDeleted = streamInfoValue(info, 'max-deleted-entry-id');
      const maxDeletedSeq = maxDeleted === null ? 0 : Number(maxDeleted.split('-')[0]);
      if (maxDeletedSeq > afterSeq) replay.gaps.add(ch);
      else if (maxDeletedSeq === afterSeq && afterSeq > 0) replay.trimmedAt.add(ch);
      const entries: BusHistoryEntry[] = [];
      for (const [id, fields] of range as Array<[Buffer, Buffer[]]>) {
        const entry = decodeEntry(id, fields);
        if (entry === null) continue;
        if (maxAge > 0 && now - entry.time > maxAge) {
          // Expired by age: the client would miss it.
          (entry.seq > afterSeq ? replay.gaps : replay.trimmedAt).add(ch);
          continue;
        }
        entries.push(entry);
      }
      const later = entries.some((e) => e.seq > afterSeq);
      if (!later && lastSeq > afterSeq && !replay.gaps.has(ch)) {
        // Events were published after afterSeq but none is stored (history_size = 0).
        replay.gaps.add(ch);
      }
      if (lastSeq === afterSeq && afterSeq > 0 && entries.length === 0) replay.trimmedAt.add(ch);
      replay.entries.set(ch, entries);
    });
    return replay;
  }

  /** A raw command client for other cluster parts (presence); fails while Redis is away. */
  get client(): Redis {
    return this.#commands;
  }

  key(name: string): string {
    return this.#key(name);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([this.#commands.quit(), this.#subscriber.quit()]);
    this.#commands.disconnect();
    this.#subscriber.disconnect();
  }

  #key(name: string): string {
    return `${this.#options.keyPrefix}${name}`;
  }

  async #maybeUp(): Promise<void> {
    if (this.#closed || this.#state === 'up') return;
    if (this.#commands.status !== 'ready' || this.#subscriber.status !== 'ready') return;
    this.#early = [];
    try {
      // Subscribe first, then read the position: every event after it arrives on the channel.
      await this.#subscriber.subscribe(this.#key('bus'));
      await this.#commands.set(this.#key('epoch'), randomBytes(4).toString('hex'), 'NX');
      const [epoch, seq] = await Promise.all([
        this.#commands.get(this.#key('epoch')),
        this.#commands.get(this.#key('seq')),
      ]);
      if (this.#commands.status !== 'ready' || this.#subscriber.status !== 'ready') return;
      this.#epoch = epoch ?? '';
      this.#state = 'up';
      const position = seq === null ? 0 : Number(seq);
      this.#options.onState('up', { epoch: this.#epoch, seq: position });
      const early = this.#early;
      this.#early = [];
      for (const event of early) if (event.seq > position) this.#options.onEvent(event);
      for (const waiter of this.#upWaiters.splice(0)) waiter();
    } catch (err) {
      this.#noteError(err);
    }
  }

  #down(): void {
    if (this.#closed || this.#state === 'down') return;
    const wasUp = this.#state === 'up';
    this.#state = 'down';
    if (wasUp || this.#lastError !== '') {
      this.#options.onState('down', { error: this.#lastError || 'connection closed' });
    }
  }

  #noteError(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.#lastError = e.message;
    this.#options.onError?.(e);
  }

  #unavailable(cause?: unknown): SidecarError {
    return new SidecarError(
      ErrorCodes.CLUSTER_UNAVAILABLE,
      `the cluster bus (Redis) is unavailable${this.#lastError === '' ? '' : `: ${this.#lastError}`}`,
      cause === undefined ? {} : { cause },
    );
  }
}

/** Parses `<json header>\n<data>`; null when malformed. */
export function decodeBusMessage(message: Buffer): BusEvent | null {
  const newline = message.indexOf(10);
  if (newline < 0) return null;
  let header: unknown;
  try {
    header = JSON.parse(message.subarray(0, newline).toString('utf8'));
  } catch {
    return null;
  }
  if (!Array.isArray(header) || header.length < 7) return null;
  const [seq, time, origin, pid, event, close, channels, meta, raw, socket] = header as unknown[];
  if (typeof seq !== 'number' || typeof time !== 'number' || typeof origin !== 'string') {
    return null;
  }
  // cjson encodes an empty Lua table as {}: no channel is never published, so that is malformed.
  if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) return null;
  return {
    seq,
    time,
    origin,
    channels: channels,
    event: typeof event === 'string' && event !== '' ? event : undefined,
    publisherId: typeof pid === 'string' && pid !== '' ? pid : undefined,
    close: close === '1',
    data: message.subarray(newline + 1),
    topicMeta: decodeTopicMeta(typeof meta === 'string' ? meta : ''),
    raw: raw === '1',
    socket: typeof socket === 'string' && socket !== '' ? socket : undefined,
  };
}

/** The Mercure fields the publish script carried ('' or JSON); undefined when absent or bad. */
export function decodeTopicMeta(text: string): TopicMeta | undefined {
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  return {
    private: v['private'] === true,
    id: typeof v['id'] === 'string' ? v['id'] : undefined,
    retryMs: typeof v['retryMs'] === 'number' ? v['retryMs'] : undefined,
  };
}

function decodeEntry(id: Buffer, fields: Buffer[]): BusHistoryEntry | null {
  const seq = Number(id.toString('latin1').split('-')[0]);
  if (!Number.isSafeInteger(seq)) return null;
  const map = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    map.set((fields[i] as Buffer).toString('latin1'), fields[i + 1] as Buffer);
  }
  const event = map.get('e')?.toString('utf8') ?? '';
  const pid = map.get('p')?.toString('utf8') ?? '';
  const socket = socketOf(map.get('s'));
  return {
    seq,
    time: Number(map.get('t')?.toString('latin1') ?? '0'),
    rank: Number(map.get('r')?.toString('latin1') ?? '0'),
    event: event === '' ? undefined : event,
    publisherId: pid === '' ? undefined : pid,
    data: map.get('d') ?? Buffer.alloc(0),
    topicMeta: decodeTopicMeta(map.get('m')?.toString('utf8') ?? ''),
    ...(map.get('g')?.toString('latin1') === '1' ? { raw: true } : {}),
    ...(socket === undefined ? {} : { socket }),
  };
}

/** A field of an XINFO STREAM reply (a flat [name, value, ...] list). */
function streamInfoValue(info: unknown, name: string): string | null {
  if (!Array.isArray(info)) return null;
  for (let i = 0; i + 1 < info.length; i += 2) {
    if (String(info[i]) === name) return String(info[i + 1]);
  }
  return null;
}

/** An entry's socket field ('' or absent: none). */
function socketOf(field: Buffer | undefined): string | undefined {
  const text = field?.toString('latin1') ?? '';
  return text === '' ? undefined : text;
}
