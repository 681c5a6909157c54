/**
 * This node's liveness in the cluster: the key `node:<nodeId>` (expires after `ttlMs`), refreshed
 * every ttlMs/3. Cluster parts that keep per-node state in Redis (presence members, Mercure
 * subscriptions) register a sweep, run after each refresh, that removes the state of nodes whose
 * key expired (killed, partitioned). One instance per node, shared by those parts.
 * Invariants: never throws into callers; while Redis is away nothing is refreshed nor swept.
 */
import type { Logger } from 'pino';
import type { RedisBus } from './redis-bus.ts';

export interface NodeLivenessOptions {
  bus: RedisBus;
  nodeId: string;
  /** A node whose key was not refreshed for this long is dead for the others. */
  ttlMs: number;
  logger: Logger;
}

interface Sweep {
  name: string;
  run: () => Promise<void>;
}

export class NodeLiveness {
  readonly nodeId: string;
  readonly ttlMs: number;
  readonly #bus: RedisBus;
  readonly #logger: Logger;
  readonly #sweeps: Sweep[] = [];
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(options: NodeLivenessOptions) {
    this.nodeId = options.nodeId;
    this.ttlMs = options.ttlMs;
    this.#bus = options.bus;
    this.#logger = options.logger;
    const periodMs = Math.max(250, Math.floor(options.ttlMs / 3));
    this.#timer = setInterval(() => {
      void this.#beat();
    }, periodMs);
    this.#timer.unref();
    // Sweeps registered right after construction still run in this first beat (after its SET).
    void this.#beat();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The liveness key of `nodeId` (this node's by default), prefix included. */
  key(nodeId = this.nodeId): string {
    return this.#bus.key(`node:${nodeId}`);
  }

  /**
   * Runs `run` after each refresh while the bus is up, the sweeps one after the other. A
   * rejection is logged (debug: the next beat retries), never thrown.
   */
  onBeat(name: string, run: () => Promise<void>): void {
    this.#sweeps.push({ name, run });
  }

  /** Stops refreshing (the key lapses after ttlMs). Idempotent. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /**
   * Graceful stop: stops refreshing and deletes the key now, so this node's state can be removed
   * at once (by its own parts or the others' sweeps). Never rejects: with Redis away the key
   * lapses by itself.
   */
  async retire(): Promise<void> {
    this.close();
    if (this.#bus.state !== 'up') return;
    try {
      await this.#bus.client.del(this.key());
    } catch (err) {
      this.#logger.debug({ err: (err as Error).message }, 'cluster: liveness key not deleted');
    }
  }

  async #beat(): Promise<void> {
    if (this.#closed || this.#bus.state !== 'up') return;
    try {
      await this.#bus.client.set(this.key(), '1', 'PX', this.ttlMs);
    } catch (err) {
      this.#logger.debug({ err: (err as Error).message }, 'cluster: heartbeat failed');
      return;
    }
    for (const sweep of this.#sweeps) {
      if (this.#closed) return;
      try {
        await sweep.run();
      } catch (err) {
        this.#logger.debug(
          { err: (err as Error).message, sweep: sweep.name },
          'cluster: sweep of dead nodes failed',
        );
      }
    }
  }
}
