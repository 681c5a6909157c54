/**
 * One sidecar's place in the cluster: every publish goes to the Redis bus and comes back to every
 * hub (this one too) numbered in the cluster's order; a resume from before this node joined reads
 * the shared history. While Redis is away, publishes are delivered locally under a local epoch
 * (their ids never collide with the cluster's), readiness says "degraded", and once the bus is
 * back every open stream gets `askr:lost` (reason "bus"): other nodes' events may have been missed.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import { formatEventId } from '../sse/event-history.ts';
import type { EventBus } from '../sse/event-bus.ts';
import {
  isStreamContent,
  type Hub,
  type PublishInput,
  type PublishResult,
  type SharedHistory,
} from '../sse/hub.ts';
import { RedisBus, type BusEvent } from './redis-bus.ts';

export interface ClusterHooks {
  onBusState?(up: boolean): void;
  onBusPublish?(): void;
  onBusReceive?(lagMs: number): void;
  onBusError?(): void;
  onReconnect?(): void;
  /** A publish delivered on this node only because the bus was down. */
  onLocalOnly?(): void;
}

export interface ClusterNodeOptions {
  url: string;
  keyPrefix: string;
  nodeId: string;
  hub: Hub;
  historySize: () => number;
  historyMaxAgeMs: () => number;
  logger: Logger;
  hooks?: ClusterHooks;
  /** How long start() waits for Redis before going on degraded; default 3000 ms. */
  startWaitMs?: number;
}

/** How long a publisher waits for its own event to come back before answering without a count. */
const ECHO_WAIT_MS = 5000;
/** Own events remembered while their publish() waits for the script's reply (a bound, not a
 * size anyone reaches: the reply follows within a round trip). */
const ECHOED_MAX = 10_000;

function localEpoch(): string {
  return `l${randomInt(36 ** 6, 36 ** 7).toString(36)}`;
}

export class ClusterNode implements EventBus {
  readonly bus: RedisBus;
  readonly nodeId: string;
  readonly #options: ClusterNodeOptions;
  readonly #hub: Hub;
  readonly #log: Logger;
  readonly #hooks: ClusterHooks;
  /** Publishes of this node waiting for their event to come back: seq -> resolve(subscribers). */
  readonly #echoes = new Map<number, (subscribers: number) => void>();
  /** Own events that came back before their publish() had its seq: seq -> subscribers. */
  readonly #echoed = new Map<number, number>();
  #everUp = false;
  /** Also told of every event from the bus (cluster presence keeps its member mirror with it). */
  observer: ((event: BusEvent) => void) | null = null;
  /** Also told each time the bus comes up, after start() and after an outage (state kept in
   * Redis is read again then: the Mercure subscriptions mirror). */
  onBusUp: (() => void) | null = null;
  #downSince: number | null = null;

  constructor(options: ClusterNodeOptions) {
    this.#options = options;
    this.nodeId = options.nodeId;
    this.#hub = options.hub;
    this.#log = options.logger;
    this.#hooks = options.hooks ?? {};
    this.bus = new RedisBus({
      url: options.url,
      keyPrefix: options.keyPrefix,
      nodeId: options.nodeId,
      historySize: options.historySize,
      historyMaxAgeMs: options.historyMaxAgeMs,
      onEvent: (event) => this.#onEvent(event),
      onState: (state, info) => {
        if (state === 'up') this.#onUp(info.epoch ?? '', info.seq ?? 0);
        else if (state === 'down') this.#onDown(info.error ?? 'unknown');
      },
      onError: () => this.#hooks.onBusError?.(),
    });
  }

  async start(): Promise<void> {
    // Until the bus is up, this node numbers its own events under a local epoch.
    this.#hub.useEpoch(localEpoch(), 0);
    await this.bus.start(this.#options.startWaitMs ?? 3000);
    if (this.bus.state !== 'up') {
      this.#downSince = Date.now();
      this.#log.warn(
        { error: this.bus.lastError },
        'cluster: Redis not reachable at start; delivering locally until it is (readiness: degraded)',
      );
    }
  }

  /** Null when the bus is up, else why the node is degraded. */
  degraded(): string | null {
    if (this.bus.state === 'up') return null;
    return `cluster bus (Redis) ${this.bus.state}${this.bus.lastError === '' ? '' : `: ${this.bus.lastError}`}; events are delivered on this node only`;
  }

  /**
   * Publishes through the bus (cluster order, shared history), or locally while it is down.
   * `subscribers` counts this node's streams only. Throws as Hub.publish for bad input.
   */
  async publish(input: PublishInput): Promise<PublishResult> {
    const channels = this.#hub.checkPublish(input);
    if (this.bus.state === 'up') {
      try {
        // Deduplicated channels: the script appends to each channel's stream once.
        const sent = await this.bus.publish({
          ...input,
          channels,
          raw: isStreamContent(input.ingress),
        });
        this.#hooks.onBusPublish?.();
        this.#hub.notePublish(input.ingress, channels.length);
        if (sent === null) return { id: null, subscribers: 0, closed: 0 };
        if (sent.seq === 0) return { id: null, subscribers: 0, closed: 0 };
        // The copy may have come back on the pub/sub connection before the script's reply.
        const early = this.#echoed.get(sent.seq);
        this.#echoed.delete(sent.seq);
        const subscribers = early ?? (await this.#echo(sent.seq));
        return { id: formatEventId(sent.epoch, sent.seq), subscribers, closed: 0 };
      } catch (err) {
        this.#log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'cluster: publish to Redis failed; delivered on this node only',
        );
      }
    }
    this.#hooks.onLocalOnly?.();
    return this.#hub.publish(input);
  }

  /** The shared history a stream resuming from `lastEventId` needs, if any (else undefined). */
  async sharedHistory(
    channels: readonly string[],
    lastEventId: string | null | undefined,
  ): Promise<SharedHistory | undefined> {
    const afterSeq = this.#hub.needsSharedHistory(lastEventId);
    if (afterSeq === null || this.bus.state !== 'up') return undefined;
    try {
      const replay = await this.bus.history(channels, afterSeq);
      return {
        afterSeq,
        entries: replay.entries,
        gaps: replay.gaps,
        trimmedAt: replay.trimmedAt,
      };
    } catch {
      return undefined; // the hub reports the gap (askr:lost too_old)
    }
  }

  async close(): Promise<void> {
    for (const resolve of this.#echoes.values()) resolve(0);
    this.#echoes.clear();
    await this.bus.close();
  }

  #echo(seq: number): Promise<number> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#echoes.delete(seq);
        resolve(0);
      }, ECHO_WAIT_MS);
      timer.unref();
      this.#echoes.set(seq, (n) => {
        clearTimeout(timer);
        resolve(n);
      });
    });
  }

  #onEvent(event: BusEvent): void {
    if (this.bus.state !== 'up' || this.#hub.epoch !== this.bus.epoch) return;
    this.#hooks.onBusReceive?.(Date.now() - event.time);
    let subscribers = 0;
    try {
      subscribers = this.#hub.deliverNumbered(event).subscribers;
    } catch (err) {
      // A channel name another node accepted and this one does not: never crash on bus input.
      this.#hooks.onBusError?.();
      this.#log.warn(
        { err: err instanceof Error ? err.message : String(err), seq: event.seq },
        'cluster: event from the bus refused',
      );
    }
    this.observer?.(event);
    const resolve = this.#echoes.get(event.seq);
    if (resolve !== undefined) {
      this.#echoes.delete(event.seq);
      resolve(subscribers);
    } else if (event.origin === this.nodeId) {
      // Our own publish whose script reply has not arrived yet: publish() picks this up.
      this.#echoed.set(event.seq, subscribers);
      if (this.#echoed.size > ECHOED_MAX) {
        const oldest = this.#echoed.keys().next().value;
        if (oldest !== undefined) this.#echoed.delete(oldest);
      }
    }
  }

  #onUp(epoch: string, seq: number): void {
    const streams = this.#hub.stats().connections;
    this.#hub.useEpoch(epoch, seq);
    this.#hooks.onBusState?.(true);
    if (this.#everUp) this.#hooks.onReconnect?.();
    const wasDown = this.#downSince !== null;
    this.#log.info(
      { epoch, seq, node: this.#options.nodeId },
      wasDown ? 'cluster: Redis is back; events are shared again' : 'cluster: joined',
    );
    if (wasDown && streams > 0) {
      const told = this.#hub.announceLost('bus');
      this.#log.warn({ streams: told }, 'cluster: open streams told they may have missed events');
    }
    this.#everUp = true;
    this.#downSince = null;
    this.onBusUp?.();
  }

  #onDown(error: string): void {
    if (this.#downSince !== null) return;
    this.#downSince = Date.now();
    this.#hooks.onBusState?.(false);
    this.#hub.useEpoch(localEpoch(), 0);
    for (const resolve of this.#echoes.values()) resolve(0);
    this.#echoes.clear();
    this.#log.warn({ error }, 'cluster: lost Redis; delivering on this node only until it is back');
  }
}
