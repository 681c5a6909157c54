/**
 * Mercure active subscriptions: the registry of open subscriptions, the subscription events the hub
 * publishes when one starts or ends (private updates, SSE type `mercure`, on topics under the hub
 * path), and the documents the subscriptions API serves.
 *
 * In a cluster every node publishes its own subscriptions' events through the bus, and every node
 * applies the events of the others to its registry, so the API lists the whole cluster's
 * subscriptions; entries are tagged with the node they come from. A store (the Redis mirror,
 * cluster/cluster-subscriptions.ts) keeps this node's subscriptions for the others: it loads them
 * into a node that (re)joins and removes those of a dead node. Invariant: a subscription event is
 * published for every change of this node's subscriptions and for every subscription swept from a
 * dead node (endStored); loads and dropOrigin apply what the cluster already announced.
 */
import type { Logger } from 'pino';
import type { PublishFn, TopicMeta } from '../sse/hub.ts';
import { payloadFor, type Grants } from './token.ts';
import type { TopicMatcher } from './matchers.ts';

/** A subscription as the API and the events describe it (1.0; 0.x in compatibility mode). */
export type SubscriptionDoc = Record<string, unknown> & { id: string; subscriber: string };

interface Entry {
  doc: SubscriptionDoc;
  /** The node whose subscription it is (this node: options.nodeId, or '' without a cluster). */
  origin: string;
  /** 0.x document (a `topic=` selector), served by the 0.x routes only. */
  legacy: boolean;
  matchType: string;
  match: string;
}

/** What the registry learns from the cluster bus (see observe). */
export interface ObservedEvent {
  origin: string;
  channels: readonly string[];
  data: Buffer;
  topicMeta: TopicMeta | undefined;
}

export interface SubscriptionRegistryOptions {
  /** The hub path (mercure.path) the subscription topics hang off. */
  hubPath: () => string;
  publish: PublishFn;
  logger: Logger;
  /** This node's id in a cluster: events from it are not applied twice. */
  nodeId?: string;
  /** Most subscriptions listed (whole cluster); beyond it other nodes' new ones are not listed. */
  maxEntries?: number;
}

/** Where a cluster keeps this node's subscriptions for the other nodes (see useStore). */
export interface SubscriptionStore {
  /** This node opened these subscriptions; called before their `active: true` events go out. */
  add(docs: readonly SubscriptionDoc[]): void;
  /**
   * These subscriptions of this node ended: resolves the ids whose `active: false` event this
   * node is to publish (all of them, except those another node already ended for the cluster
   * when it swept this node as dead). Never rejects.
   */
  remove(docs: readonly SubscriptionDoc[]): Promise<readonly string[]>;
}

const DEFAULT_MAX_ENTRIES = 1_000_000;

/** `{path}/subscriptions/{match_type}/{match}/{subscriber}`, each value percent-encoded once. */
export function subscriptionTopic(
  hubPath: string,
  matchType: string,
  match: string,
  subscriber: string,
): string {
  return `${hubPath}/subscriptions/${encodeURIComponent(matchType)}/${encodeURIComponent(match)}/${encodeURIComponent(subscriber)}`;
}

/** 0.x: `{path}/subscriptions/{topic}/{subscriber}`. */
export function legacySubscriptionTopic(
  hubPath: string,
  topic: string,
  subscriber: string,
): string {
  return `${hubPath}/subscriptions/${encodeURIComponent(topic)}/${encodeURIComponent(subscriber)}`;
}

export class SubscriptionRegistry {
  readonly #options: SubscriptionRegistryOptions;
  readonly #self: string;
  readonly #entries = new Map<string, Entry>();
  /** Entries per origin node (the cluster mirror asks which nodes are listed at every beat). */
  readonly #perOrigin = new Map<string, number>();
  #store: SubscriptionStore | null = null;
  /** Per load in progress, the ids observed meanwhile: they win over the snapshot. */
  readonly #loads = new Set<Set<string>>();

  constructor(options: SubscriptionRegistryOptions) {
    this.#options = options;
    this.#self = options.nodeId ?? '';
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Keeps this node's subscriptions in `store` from now on (set once, by the cluster mirror). */
  useStore(store: SubscriptionStore): void {
    this.#store = store;
  }

  /**
   * Registers and announces one stream's subscriptions (one per matcher, all with `subscriber`);
   * returns what ends them (registry removal and `active: false` events), to call once.
   */
  open(subscriber: string, matchers: readonly TopicMatcher[], grants: Grants | null): () => void {
    const hubPath = this.#options.hubPath();
    const docs = matchers.map((m) => this.#doc(hubPath, subscriber, m, grants));
    for (const entry of docs) this.#set(entry);
    // Stored before announced: on the one Redis connection, a node that reads the store after
    // seeing the event finds the subscription there.
    this.#store?.add(docs.map((e) => e.doc));
    for (const entry of docs) this.#announce(entry);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      for (const entry of docs) this.#delete(entry.doc.id);
      const announceEnd = (ids: ReadonlySet<string> | null): void => {
        for (const entry of docs) {
          if (ids !== null && !ids.has(entry.doc.id)) continue;
          this.#announce({ ...entry, doc: { ...entry.doc, active: false } });
        }
      };
      const store = this.#store;
      if (store === null) {
        announceEnd(null);
        return;
      }
      store.remove(docs.map((e) => e.doc)).then(
        (ids) => announceEnd(new Set(ids)),
        () => announceEnd(null), // the contract says never; announcing twice beats never
      );
    };
  }

  /** Applies another node's subscription event (cluster bus observer). Never throws. */
  observe(event: ObservedEvent): void {
    if (event.origin === this.#options.nodeId || event.topicMeta?.private !== true) return;
    const topic = event.channels[0];
    const prefix = `${this.#options.hubPath()}/subscriptions/`;
    if (topic === undefined || !topic.startsWith(prefix)) return;
    let doc: unknown;
    try {
      doc = JSON.parse(event.data.toString('utf8'));
    } catch {
      return;
    }
    const entry = this.#entryOf(doc, event.origin);
    if (entry?.doc.id !== topic) return;
    for (const touched of this.#loads) touched.add(topic);
    if (entry.doc['active'] !== true) {
      this.#delete(topic);
      return;
    }
    this.#set(entry);
  }

  /**
   * Starts replacing the other nodes' subscriptions with a snapshot of the cluster's store: call
   * it before the snapshot is read, then give the returned function the snapshot (node id ->
   * documents) or null when the read failed. Events observed in between win over the snapshot
   * (they may be newer than it). This node's own subscriptions are never replaced.
   */
  beginLoad(): (snapshot: ReadonlyMap<string, readonly unknown[]> | null) => void {
    const touched = new Set<string>();
    this.#loads.add(touched);
    return (snapshot) => {
      if (!this.#loads.delete(touched) || snapshot === null) return;
      const next = new Map<string, Entry>();
      for (const [origin, docs] of snapshot) {
        if (origin === this.#self) continue;
        for (const doc of docs) {
          const entry = this.#entryOf(doc, origin);
          if (entry !== null && entry.doc['active'] === true) next.set(entry.doc.id, entry);
        }
      }
      for (const [id, entry] of this.#entries) {
        if (entry.origin !== this.#self && !touched.has(id) && !next.has(id)) this.#delete(id);
      }
      for (const [id, entry] of next) if (!touched.has(id)) this.#set(entry);
    };
  }

  /** This node's open subscriptions (their `active: true` documents). */
  own(): SubscriptionDoc[] {
    const out: SubscriptionDoc[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.origin === this.#self) out.push(entry.doc);
    }
    return out;
  }

  /** Whether `id` is an open subscription of this node. */
  isOwn(id: string): boolean {
    return this.#entries.get(id)?.origin === this.#self;
  }

  /** The other nodes that have subscriptions listed here. */
  origins(): Set<string> {
    const out = new Set(this.#perOrigin.keys());
    out.delete(this.#self);
    return out;
  }

  /**
   * Forgets every subscription of `origin`, a node found dead, without an event (the node that
   * swept it publishes them, see endStored). Returns how many were listed.
   */
  dropOrigin(origin: string): number {
    if (origin === this.#self || !this.#perOrigin.has(origin)) return 0;
    let n = 0;
    for (const [id, entry] of this.#entries) {
      if (entry.origin === origin && this.#delete(id)) n += 1;
    }
    return n;
  }

  /**
   * Ends subscriptions this node removed from the store and no one else announces: a dead node's
   * (this node swept it, the only one that did) or this node's own that ended while Redis was
   * away. Removes them and publishes their `active: false` events, so every node and every
   * subscriber of subscription events learns the end. Returns how many events went out.
   */
  endStored(origin: string, docs: readonly unknown[]): number {
    let n = 0;
    for (const doc of docs) {
      const entry = this.#entryOf(doc, origin);
      if (entry === null) continue;
      this.#delete(entry.doc.id);
      this.#announce({ ...entry, doc: { ...entry.doc, active: false } });
      n += 1;
    }
    return n;
  }

  /** 1.0 documents, optionally those of one matcher, or one subscription. */
  list(
    filter: { matchType?: string; match?: string; subscriber?: string } = {},
  ): SubscriptionDoc[] {
    const out: SubscriptionDoc[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.legacy) continue;
      if (filter.matchType !== undefined && entry.matchType !== filter.matchType) continue;
      if (filter.match !== undefined && entry.match !== filter.match) continue;
      if (filter.subscriber !== undefined && entry.doc.subscriber !== filter.subscriber) continue;
      out.push(entry.doc);
    }
    return out;
  }

  /** 0.x documents, optionally of one topic selector, or one subscription. */
  listLegacy(filter: { topic?: string; subscriber?: string } = {}): SubscriptionDoc[] {
    const out: SubscriptionDoc[] = [];
    for (const entry of this.#entries.values()) {
      if (!entry.legacy) continue;
      if (filter.topic !== undefined && entry.match !== filter.topic) continue;
      if (filter.subscriber !== undefined && entry.doc.subscriber !== filter.subscriber) continue;
      out.push(entry.doc);
    }
    return out;
  }

  /**
   * Publishes again the `active: true` event of these open subscriptions of this node: the
   * cluster did not know them (opened while Redis was away, or swept while this node was cut off).
   */
  reannounce(ids: Iterable<string>): void {
    for (const id of ids) {
      const entry = this.#entries.get(id);
      if (entry?.origin === this.#self) this.#announce(entry);
    }
  }

  #set(entry: Entry): void {
    const max = this.#options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    // This node's own are always listed: they are bounded by its connections.
    const capped = entry.origin !== this.#self && this.#entries.size >= max;
    if (capped && !this.#entries.has(entry.doc.id)) return;
    this.#delete(entry.doc.id);
    this.#entries.set(entry.doc.id, entry);
    this.#perOrigin.set(entry.origin, (this.#perOrigin.get(entry.origin) ?? 0) + 1);
  }

  /** Removes one entry; false when it was not listed. */
  #delete(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    this.#entries.delete(id);
    const n = (this.#perOrigin.get(entry.origin) ?? 1) - 1;
    if (n > 0) this.#perOrigin.set(entry.origin, n);
    else this.#perOrigin.delete(entry.origin);
    return true;
  }

  /** A subscription document from another node (bus event or store), checked; null if foreign. */
  #entryOf(value: unknown, origin: string): Entry | null {
    if (typeof value !== 'object' || value === null) return null;
    const doc = value as SubscriptionDoc;
    if (typeof doc.id !== 'string' || typeof doc.subscriber !== 'string') return null;
    if (!doc.id.startsWith(`${this.#options.hubPath()}/subscriptions/`)) return null;
    const legacy = doc['@context'] !== undefined;
    const matchType = legacy ? 'uritemplate' : String(doc['match_type']);
    const match = String(legacy ? doc['topic'] : doc['match']);
    return { doc, origin, legacy, matchType, match };
  }

  #doc(hubPath: string, subscriber: string, m: TopicMatcher, grants: Grants | null): Entry {
    const payload = payloadFor(grants, m.pattern);
    const withPayload = payload === undefined ? {} : { payload };
    const origin = this.#self;
    if (m.type === 'uritemplate') {
      const id = legacySubscriptionTopic(hubPath, m.pattern, subscriber);
      return {
        origin,
        legacy: true,
        matchType: m.type,
        match: m.pattern,
        doc: {
          '@context': 'https://mercure.rocks/',
          id,
          type: 'Subscription',
          topic: m.pattern,
          subscriber,
          active: true,
          ...withPayload,
        },
      };
    }
    const id = subscriptionTopic(hubPath, m.type, m.pattern, subscriber);
    return {
      origin,
      legacy: false,
      matchType: m.type,
      match: m.pattern,
      doc: {
        id,
        type: 'subscription',
        match_type: m.type,
        match: m.pattern,
        subscriber,
        active: true,
        ...withPayload,
      },
    };
  }

  #announce(entry: Entry): void {
    this.#options
      .publish({
        channels: [entry.doc.id],
        data: Buffer.from(JSON.stringify(entry.doc)),
        // 1.0 marks hub-generated events with the reserved type; 0.x events had none.
        ...(entry.legacy ? {} : { event: 'mercure' }),
        topicMeta: { private: true },
        ingress: 'internal',
      })
      .catch((err: unknown) => {
        this.#options.logger.warn(
          { err: err instanceof Error ? err.message : String(err), topic: entry.doc.id },
          'mercure: subscription event not published',
        );
      });
  }
}
