/**
 * Mercure active subscriptions: the registry of open subscriptions, the subscription events the hub
 * publishes when one starts or ends (private updates, SSE type `mercure`, on topics under the hub
 * path), and the documents the subscriptions API serves.
 *
 * In a cluster every node publishes its own subscriptions' events through the bus, and every node
 * applies the events of the others to its registry, so the API lists the whole cluster's
 * subscriptions. Invariant: a subscription event is published for every registry change made here.
 */
import type { Logger } from 'pino';
import type { PublishFn, TopicMeta } from '../sse/hub.ts';
import { payloadFor, type Grants } from './token.ts';
import type { TopicMatcher } from './matchers.ts';

/** A subscription as the API and the events describe it (1.0; 0.x in compatibility mode). */
export type SubscriptionDoc = Record<string, unknown> & { id: string; subscriber: string };

interface Entry {
  doc: SubscriptionDoc;
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
  /** Most subscriptions listed (whole cluster); beyond it new ones are announced, not listed. */
  maxEntries?: number;
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
  readonly #entries = new Map<string, Entry>();

  constructor(options: SubscriptionRegistryOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Registers and announces one stream's subscriptions (one per matcher, all with `subscriber`);
   * returns what ends them (registry removal and `active: false` events), to call once.
   */
  open(subscriber: string, matchers: readonly TopicMatcher[], grants: Grants | null): () => void {
    const hubPath = this.#options.hubPath();
    const docs = matchers.map((m) => this.#doc(hubPath, subscriber, m, grants));
    for (const entry of docs) this.#set(entry);
    for (const entry of docs) this.#announce(entry);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      for (const entry of docs) {
        this.#entries.delete(entry.doc.id);
        this.#announce({ ...entry, doc: { ...entry.doc, active: false } });
      }
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
    if (typeof doc !== 'object' || doc === null) return;
    const d = doc as SubscriptionDoc;
    if (d.id !== topic || typeof d.subscriber !== 'string') return;
    if (d['active'] !== true) {
      this.#entries.delete(topic);
      return;
    }
    const legacy = d['@context'] !== undefined;
    const matchType = legacy ? 'uritemplate' : String(d['match_type']);
    const match = String(legacy ? d['topic'] : d['match']);
    this.#set({ doc: d, legacy, matchType, match });
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

  #set(entry: Entry): void {
    const max = this.#options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (this.#entries.size >= max && !this.#entries.has(entry.doc.id)) return;
    this.#entries.set(entry.doc.id, entry);
  }

  #doc(hubPath: string, subscriber: string, m: TopicMatcher, grants: Grants | null): Entry {
    const payload = payloadFor(grants, m.pattern);
    const withPayload = payload === undefined ? {} : { payload };
    if (m.type === 'uritemplate') {
      const id = legacySubscriptionTopic(hubPath, m.pattern, subscriber);
      return {
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
