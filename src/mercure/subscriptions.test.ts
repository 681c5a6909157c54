/**
 * The subscription registry's cluster side, without Redis: a store decides which ends this node
 * announces, a snapshot load never undoes an event observed while it was read, a dead node's
 * entries go (silently, or with one `active: false` each from the node that swept it). A
 * regression looks like: an end announced although a sweeper announced it, a subscription
 * resurrected or lost by a load, or this node's own subscriptions touched by a load or a drop.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { PublishInput } from '../sse/hub.ts';
import type { TopicMatcher } from './matchers.ts';
import {
  SubscriptionRegistry,
  subscriptionTopic,
  type SubscriptionDoc,
  type SubscriptionStore,
} from './subscriptions.ts';

const HUB = '/.well-known/mercure';

function exact(pattern: string): TopicMatcher {
  return { type: 'exact', pattern, any: false, matches: (t) => t === pattern };
}

/** A registry of node `self` whose publishes are recorded as the documents they carry. */
function registry(self = 'self'): { reg: SubscriptionRegistry; published: SubscriptionDoc[] } {
  const published: SubscriptionDoc[] = [];
  const reg = new SubscriptionRegistry({
    hubPath: () => HUB,
    logger: pino({ level: 'silent' }),
    nodeId: self,
    publish: (input: PublishInput) => {
      published.push(JSON.parse(input.data.toString('utf8')) as SubscriptionDoc);
      return Promise.resolve({ id: null, subscribers: 0, closed: 0 });
    },
  });
  return { reg, published };
}

/** The document another node would store or announce for `match` and `subscriber`. */
function doc(match: string, subscriber: string, active = true): SubscriptionDoc {
  return {
    id: subscriptionTopic(HUB, 'exact', match, subscriber),
    type: 'subscription',
    match_type: 'exact',
    match,
    subscriber,
    active,
  };
}

function event(origin: string, d: SubscriptionDoc) {
  return {
    origin,
    channels: [d.id],
    data: Buffer.from(JSON.stringify(d)),
    topicMeta: { private: true, id: undefined, retryMs: undefined },
  };
}

const listed = (reg: SubscriptionRegistry): string[] => reg.list().map((d) => d['match'] as string);
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SubscriptionRegistry with a store', () => {
  it.each([
    ['announced by this node when the store removed it', ['urn:uuid:1'], [false]],
    ['not announced when a sweeper removed it first', [], []],
  ])('an end is %s', async (_name, toAnnounce, expected) => {
    const { reg, published } = registry();
    const calls: string[] = [];
    const store: SubscriptionStore = {
      add: (docs) => calls.push(`add ${docs.map((d) => d.subscriber).join()}`),
      remove: (docs) => {
        calls.push(`remove ${docs.map((d) => d.subscriber).join()}`);
        return Promise.resolve(
          docs.filter((d) => toAnnounce.includes(d.subscriber)).map((d) => d.id),
        );
      },
    };
    reg.useStore(store);
    const end = reg.open('urn:uuid:1', [exact('books')], null);
    expect(calls).toEqual(['add urn:uuid:1']);
    end();
    end();
    await flush();
    expect(calls).toEqual(['add urn:uuid:1', 'remove urn:uuid:1']);
    expect(published.map((d) => d['active'])).toEqual([true, ...expected]);
    expect(reg.size).toBe(0);
  });

  it('a load replaces the other nodes’ entries, keeps its own, and loses to events observed meanwhile', () => {
    const { reg } = registry();
    reg.open('urn:uuid:own', [exact('own')], null);
    reg.observe(event('b', doc('stale', 'urn:uuid:s')));
    reg.observe(event('b', doc('ends-meanwhile', 'urn:uuid:e')));
    const apply = reg.beginLoad();
    // Observed between the read and its result: newer than the snapshot may be.
    reg.observe(event('b', doc('ends-meanwhile', 'urn:uuid:e', false)));
    reg.observe(event('c', doc('opened-meanwhile', 'urn:uuid:o')));
    apply(
      new Map([
        ['b', [doc('ends-meanwhile', 'urn:uuid:e'), doc('loaded', 'urn:uuid:l'), 'not json']],
        ['self', [doc('own-copy', 'urn:uuid:x')]],
      ]),
    );
    expect(listed(reg).sort()).toEqual(['loaded', 'opened-meanwhile', 'own']);
    expect([...reg.origins()].sort()).toEqual(['b', 'c']);
  });

  it('a failed load changes nothing', () => {
    const { reg } = registry();
    reg.observe(event('b', doc('kept', 'urn:uuid:k')));
    reg.beginLoad()(null);
    expect(listed(reg)).toEqual(['kept']);
  });

  it('a dead node: dropped silently, or ended with one event each by the node that swept it', () => {
    const { reg, published } = registry();
    reg.open('urn:uuid:own', [exact('own')], null);
    reg.observe(event('b', doc('b1', 'urn:uuid:b1')));
    reg.observe(event('b', doc('b2', 'urn:uuid:b2')));
    reg.observe(event('c', doc('c1', 'urn:uuid:c1')));
    expect(reg.dropOrigin('self')).toBe(0);
    expect(reg.dropOrigin('b')).toBe(2);
    expect(listed(reg).sort()).toEqual(['c1', 'own']);
    published.length = 0;
    expect(reg.endStored('c', [doc('c1', 'urn:uuid:c1'), null])).toBe(1);
    expect(published).toEqual([doc('c1', 'urn:uuid:c1', false)]);
    expect(listed(reg)).toEqual(['own']);
    expect(reg.origins().size).toBe(0);
    expect(reg.own().map((d) => d['match'])).toEqual(['own']);
  });
});
