/**
 * Mercure active subscriptions across the cluster, kept in Redis: each node stores the documents
 * of its own open subscriptions, so a node that starts, or whose bus comes back, lists those
 * opened before (load); a node that dies (kill -9, partition) has them removed by exactly one live
 * node, which publishes their `active: false` events, and forgotten by every node.
 *
 *   open   ─MULTI─▶ SET node:<n> PX ttl; SADD msubnodes n; HSET msubs:<n> id doc ─▶ active:true
 *   end    ─MULTI─▶ HDEL msubs:<n> id ─(1: still there)─▶ active:false  (0: a sweeper announced it)
 *   beat   ─Lua──▶ node:<d> expired, SREM msubnodes d ─▶ HGETALL + DEL msubs:<d> ─▶ active:false
 *   bus up ─Lua──▶ msubs of every live node ─▶ registry.beginLoad(); own docs written back (sync)
 *
 * Invariants: Redis away never throws nor blocks the local registry (this node's subscriptions
 * stay listed; the difference is written back when the bus is up again); an `active: false` event
 * is published by whoever removed the subscription from Redis, so once. The liveness key and its
 * heartbeat are node-liveness.ts's, shared with cluster presence.
 */
import type { ChainableCommander } from 'ioredis';
import type { Logger } from 'pino';
import { RateLimitedLog } from '../observability/rate-limited-log.ts';
import type {
  SubscriptionDoc,
  SubscriptionRegistry,
  SubscriptionStore,
} from '../mercure/subscriptions.ts';
import type { NodeLiveness } from './node-liveness.ts';
import type { RedisBus } from './redis-bus.ts';

/** Removes a dead node's subscriptions; returns [id, doc, ...] (empty: alive, or swept already). */
const SWEEP_LUA = `
local p, node = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'node:' .. node) == 1 then return {} end
if redis.call('SREM', p .. 'msubnodes', node) == 0 then return {} end
local docs = redis.call('HGETALL', p .. 'msubs:' .. node)
redis.call('DEL', p .. 'msubs:' .. node)
return docs
`;

/** The subscriptions of every live node: [node, [doc, ...], ...]. */
const SNAPSHOT_LUA = `
local p = ARGV[1]
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', p .. 'msubnodes')) do
  if redis.call('EXISTS', p .. 'node:' .. node) == 1 then
    out[#out + 1] = node
    out[#out + 1] = redis.call('HVALS', p .. 'msubs:' .. node)
  end
end
return out
`;

interface LuaClient {
  askrMsubSweep(...args: string[]): Promise<string[]>;
  askrMsubSnapshot(...args: string[]): Promise<Array<string | string[]>>;
}

export interface ClusterSubscriptionsOptions {
  bus: RedisBus;
  keyPrefix: string;
  /** This node's liveness (its id, ttl and heartbeat), shared with cluster presence. */
  liveness: NodeLiveness;
  registry: SubscriptionRegistry;
  logger: Logger;
}

/** Longest close() waits for writes and announcements in flight. */
const CLOSE_WAIT_MS = 2000;

export class ClusterSubscriptions implements SubscriptionStore {
  readonly #o: ClusterSubscriptionsOptions;
  readonly #lua: LuaClient;
  readonly #hash: string;
  readonly #nodes: string;
  readonly #failures: RateLimitedLog;
  /** Own subscriptions whose HSET was sent (and not known to have failed): an end HDELs them. */
  readonly #stored = new Set<string>();
  /** Redis operations in flight (close() waits for them). */
  readonly #pending = new Set<Promise<unknown>>();
  /** Own subscriptions in Redis may differ from the registry: written back at the next chance. */
  #dirty = false;
  /** The cluster's subscriptions are still to be loaded (bus came up, or the last load failed). */
  #loadDue = false;
  #syncing = false;
  #syncAgain = false;
  #closed = false;

  constructor(options: ClusterSubscriptionsOptions) {
    this.#o = options;
    const client = options.bus.client;
    client.defineCommand('askrMsubSweep', { numberOfKeys: 0, lua: SWEEP_LUA });
    client.defineCommand('askrMsubSnapshot', { numberOfKeys: 0, lua: SNAPSHOT_LUA });
    this.#lua = client as unknown as LuaClient;
    this.#hash = options.bus.key(`msubs:${options.liveness.nodeId}`);
    this.#nodes = options.bus.key('msubnodes');
    this.#failures = new RateLimitedLog(options.logger, 'warn');
    options.registry.useStore(this);
    options.liveness.onBeat('mercure subscriptions', () => this.#beat());
    if (options.bus.state === 'up') this.resume();
  }

  /**
   * Call each time the bus comes (back) up (ClusterNode.onBusUp): loads every live node's
   * subscriptions into the registry and writes this node's back. Never throws.
   */
  resume(): void {
    if (this.#closed) return;
    this.#loadDue = true;
    this.#load();
    this.#dirty = true;
    this.#sync();
  }

  /** SubscriptionStore: this node opened these subscriptions. */
  add(docs: readonly SubscriptionDoc[]): void {
    if (this.#o.bus.state !== 'up') {
      this.#dirty = true; // written back when the bus is up again
      return;
    }
    const tx = this.#o.bus.client.multi();
    this.#register(tx);
    for (const doc of docs) {
      this.#stored.add(doc.id);
      tx.hset(this.#hash, doc.id, JSON.stringify(doc));
    }
    this.#track(tx.exec()).catch((err: unknown) => {
      for (const doc of docs) this.#stored.delete(doc.id);
      this.#failed(err, 'store');
    });
  }

  /** SubscriptionStore: these subscriptions of this node ended; the ids to announce. */
  remove(docs: readonly SubscriptionDoc[]): Promise<readonly string[]> {
    return this.#track(this.#remove(docs));
  }

  /**
   * Graceful stop, after the streams closed and before the bus closes: waits (2 s at most) for
   * the Redis writes in flight, so the `active: false` events they release go out before the bus
   * closes. Never rejects.
   */
  async close(): Promise<void> {
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#pending]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  async #remove(docs: readonly SubscriptionDoc[]): Promise<readonly string[]> {
    const all = docs.map((d) => d.id);
    const stored = all.filter((id) => this.#stored.delete(id));
    if (stored.length === 0) return all;
    if (this.#o.bus.state !== 'up') {
      this.#dirty = true; // removed from Redis when the bus is up again
      return all;
    }
    const tx = this.#o.bus.client.multi();
    for (const id of stored) tx.hdel(this.#hash, id);
    let results: Array<[Error | null, unknown]>;
    try {
      results = (await tx.exec()) ?? [];
    } catch (err) {
      this.#failed(err, 'remove');
      return all;
    }
    // 0: a live node swept this one as dead meanwhile (it was cut off) and announced the end.
    const sweptElsewhere = new Set(stored.filter((_, i) => results[i]?.[1] === 0));
    return all.filter((id) => !sweptElsewhere.has(id));
  }

  /** A NodeLiveness beat (bus up, this node's key just refreshed). Rejects on a Redis error. */
  async #beat(): Promise<void> {
    if (this.#closed) return;
    const client = this.#o.bus.client;
    const self = this.#o.liveness.nodeId;
    for (const node of await client.smembers(this.#nodes)) {
      if (node === self) continue;
      const flat = await this.#lua.askrMsubSweep(this.#o.keyPrefix, node);
      if (flat.length === 0) continue;
      const docs = flat.filter((_, i) => i % 2 === 1).map(parseJson);
      const ended = this.#o.registry.endStored(node, docs);
      this.#o.logger.info(
        { node, subscriptions: ended },
        'mercure: subscriptions of a dead node ended',
      );
    }
    await this.#forgetDead();
    if (this.#loadDue) this.#load();
    // Swept while alive (paused or cut off longer than the ttl): the cluster lost this node's.
    if (!this.#dirty && this.#stored.size > 0) {
      this.#dirty = (await client.sismember(this.#nodes, self)) === 0;
    }
    if (this.#dirty) this.#sync();
  }

  /**
   * Forgets the listed subscriptions of nodes that are gone (no liveness, swept): those whose
   * `active: false` the sweeper could not announce (its writes or events lost with the node).
   */
  async #forgetDead(): Promise<void> {
    const origins = [...this.#o.registry.origins()];
    if (origins.length === 0) return;
    const pipeline = this.#o.bus.client.pipeline();
    for (const node of origins) {
      pipeline.exists(this.#o.liveness.key(node));
      pipeline.sismember(this.#nodes, node);
    }
    const results = (await pipeline.exec()) ?? [];
    origins.forEach((node, i) => {
      const [aliveErr, alive] = results[i * 2] ?? [null, 1];
      const [memberErr, member] = results[i * 2 + 1] ?? [null, 1];
      if (aliveErr !== null || memberErr !== null || alive !== 0 || member !== 0) return;
      const dropped = this.#o.registry.dropOrigin(node);
      if (dropped > 0) {
        this.#o.logger.info(
          { node, subscriptions: dropped },
          'mercure: subscriptions of a dead node no longer listed',
        );
      }
    });
  }

  /** Replaces the registry's other nodes' subscriptions with those in Redis. */
  #load(): void {
    if (this.#o.bus.state !== 'up') return;
    this.#loadDue = false;
    const apply = this.#o.registry.beginLoad();
    this.#track(this.#lua.askrMsubSnapshot(this.#o.keyPrefix)).then(
      (flat) => {
        const snapshot = new Map<string, unknown[]>();
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const docs = flat[i + 1];
          if (Array.isArray(docs)) snapshot.set(String(flat[i]), docs.map(parseJson));
        }
        apply(snapshot);
        this.#o.logger.debug(
          { nodes: snapshot.size, listed: this.#o.registry.size },
          'mercure: subscriptions of the cluster loaded',
        );
      },
      (err: unknown) => {
        apply(null);
        this.#loadDue = true; // retried at the next beat
        this.#failed(err, 'load');
      },
    );
  }

  /** Writes this node's subscriptions back to Redis (one run at a time). Never rejects. */
  #sync(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = true;
    void this.#track(this.#syncOnce()).finally(() => {
      this.#syncing = false;
      if (this.#syncAgain) {
        this.#syncAgain = false;
        this.#sync();
      }
    });
  }

  /**
   * Makes `msubs:<self>` hold exactly the registry's own subscriptions: writes those opened while
   * Redis was away (or swept) and announces them, removes those ended meanwhile and announces
   * their end. Announces only what it changed in Redis, so an event is never sent twice by it.
   */
  async #syncOnce(): Promise<void> {
    if (this.#o.bus.state !== 'up' || !this.#dirty) return;
    this.#dirty = false;
    const registry = this.#o.registry;
    // Read in the same tick as HGETALL is sent: later opens and ends write after it (one
    // connection), and their own add/remove take care of them.
    const own = new Set(registry.own().map((d) => d.id));
    let inRedis: Record<string, string>;
    try {
      inRedis = await this.#o.bus.client.hgetall(this.#hash);
    } catch (err) {
      this.#failed(err, 'sync');
      return;
    }
    const gone = Object.keys(inRedis).filter((id) => !own.has(id) && !this.#stored.has(id));
    // Still open now (one that ended since the snapshot is not written back). Missing although
    // written once: a live node swept this one as dead and announced their end.
    const missing = registry.own().filter((d) => own.has(d.id) && !(d.id in inRedis));
    for (const id of Object.keys(inRedis)) if (registry.isOwn(id)) this.#stored.add(id);
    if (gone.length === 0 && missing.length === 0) return;
    const tx = this.#o.bus.client.multi();
    for (const id of gone) tx.hdel(this.#hash, id);
    if (missing.length > 0) this.#register(tx);
    for (const doc of missing) {
      this.#stored.add(doc.id);
      tx.hset(this.#hash, doc.id, JSON.stringify(doc));
    }
    let results: Array<[Error | null, unknown]>;
    try {
      results = (await tx.exec()) ?? [];
    } catch (err) {
      for (const doc of missing) this.#stored.delete(doc.id);
      this.#failed(err, 'sync');
      return;
    }
    const removed = gone.filter((_, i) => results[i]?.[1] === 1);
    registry.endStored(
      this.#o.liveness.nodeId,
      removed.map((id) => parseJson(inRedis[id] ?? '')),
    );
    const offset = gone.length + 2; // the HDELs, then SET and SADD
    registry.reannounce(missing.filter((_, i) => results[offset + i]?.[1] === 1).map((d) => d.id));
    this.#o.logger.info(
      { written: missing.length, removed: removed.length },
      'mercure: subscriptions of this node written back to the cluster',
    );
  }

  /** Liveness and membership go with every write, so a sweeper never takes a node mid-write. */
  #register(tx: ChainableCommander): void {
    tx.set(this.#o.liveness.key(), '1', 'PX', this.#o.liveness.ttlMs);
    tx.sadd(this.#nodes, this.#o.liveness.nodeId);
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const done = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  #failed(err: unknown, op: string): void {
    this.#dirty = true;
    this.#failures.log(
      { err: err instanceof Error ? err.message : String(err), op },
      'mercure: subscriptions not written to the cluster (Redis); retried when it answers',
    );
  }
}

/** A stored document, or null (a foreign value under our prefix: the registry skips it). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
