// Event ids, the per-channel history ring (count and age bounds, publisherId index), replay
// planning across channels, and tombstones of deleted channels.
import { describe, expect, it } from 'vitest';
import {
  ChannelTombstones,
  EventHistory,
  formatEventId,
  parseEventId,
  planReplay,
  type HistoryEntry,
} from './event-history.ts';

function entry(seq: number, time = seq, extra: Partial<HistoryEntry> = {}): HistoryEntry {
  return { seq, time, publisherId: undefined, rank: 0, frame: Buffer.from(`e${seq}\n`), ...extra };
}

describe('event ids', () => {
  it.each([
    ['abc12345-7', { epoch: 'abc12345', seq: 7 }],
    ['abc12345-7@orders', { epoch: 'abc12345', seq: 7 }],
    ['abc12345-7@private-App.User.1@x', { epoch: 'abc12345', seq: 7 }],
    ['my-epoch-0', { epoch: 'my-epoch', seq: 0 }],
  ])('parses %s', (text, expected) => {
    expect(parseEventId(text)).toEqual(expected);
  });

  it.each(['', '-1', 'abc', 'abc-', 'abc-x', 'abc-1x', 'abc-1.5', `a-${'9'.repeat(16)}`])(
    'rejects %j',
    (text) => {
      expect(parseEventId(text)).toBeNull();
    },
  );

  it('formats what it parses', () => {
    expect(parseEventId(`${formatEventId('e1', 42)}@ch`)).toEqual({ epoch: 'e1', seq: 42 });
  });
});

describe('EventHistory', () => {
  it('keeps at most maxSize entries and remembers the highest evicted seq', () => {
    const history = new EventHistory();
    for (let seq = 1; seq <= 10; seq++) history.push(entry(seq), 3);
    expect(history.size).toBe(3);
    expect(history.since(0).map((e) => e.seq)).toEqual([8, 9, 10]);
    expect(history.evictedMaxSeq).toBe(7);
  });

  it('maxSize 0 keeps nothing but counts the event as evicted', () => {
    const history = new EventHistory();
    history.push(entry(5), 0);
    expect(history.size).toBe(0);
    expect(history.evictedMaxSeq).toBe(5);
  });

  it('evicts by age, and since() binary-searches the seq', () => {
    const history = new EventHistory();
    for (let seq = 1; seq <= 100; seq++) history.push(entry(seq * 2, seq * 10), 1000);
    history.evictExpired(1000, 501); // entries at time <= 499 are 501 ms old or more
    expect(history.since(0)[0]?.seq).toBe(100);
    expect(history.evictedMaxSeq).toBe(98);
    expect(history.since(150).map((e) => e.seq)).toEqual(
      [152, 154, 156, 158, 160].concat(Array.from({ length: 20 }, (_, i) => 162 + i * 2)),
    );
    expect(history.since(200)).toEqual([]);
    history.evictExpired(1010, 10);
    expect(history.size).toBe(0);
    expect(history.since(0)).toEqual([]);
  });

  it('indexes publisher ids only while their entry is held', () => {
    const history = new EventHistory();
    history.push(entry(1, 1, { publisherId: 'p1' }), 2);
    history.push(entry(2, 2, { publisherId: 'p2' }), 2);
    expect(history.hasPublisherId('p1')).toBe(true);
    history.push(entry(3), 2);
    expect(history.hasPublisherId('p1')).toBe(false);
    expect(history.hasPublisherId('p2')).toBe(true);
  });

  it('trimTo shrinks (reconfigure)', () => {
    const history = new EventHistory();
    for (let seq = 1; seq <= 50; seq++) history.push(entry(seq), 100);
    history.trimTo(5);
    expect(history.since(0).map((e) => e.seq)).toEqual([46, 47, 48, 49, 50]);
  });
});

describe('planReplay', () => {
  it('merges channels in seq order, once per event, keeping the lowest publish rank', () => {
    const a = new EventHistory();
    const b = new EventHistory();
    a.push(entry(1), 10);
    b.push(entry(2), 10);
    a.push(entry(3, 3, { rank: 1 }), 10);
    b.push(entry(3, 3, { rank: 0, frame: Buffer.from('b3') }), 10);
    const plan = planReplay([a, b], 0, 1 << 20);
    expect(plan.tooOld).toBe(false);
    expect(plan.entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(plan.entries[2]?.frame.toString()).toBe('b3');
  });

  it('reports too_old when any channel evicted a later event', () => {
    const a = new EventHistory();
    const b = new EventHistory();
    for (let seq = 1; seq <= 5; seq++) a.push(entry(seq), 2);
    b.push(entry(6), 2);
    expect(planReplay([a, b], 2, 1 << 20)).toMatchObject({ tooOld: true });
    expect(planReplay([a, b], 3, 1 << 20)).toMatchObject({ tooOld: false });
  });

  it('keeps only the newest entries that fit the byte budget, and says so', () => {
    const a = new EventHistory();
    for (let seq = 1; seq <= 10; seq++) a.push(entry(seq), 100); // 3 bytes each ("eN\n")
    const plan = planReplay([a], 0, 10);
    expect(plan.tooOld).toBe(true);
    expect(plan.entries.map((e) => e.seq)).toEqual([8, 9, 10]);
  });
});

describe('ChannelTombstones', () => {
  it('returns what was buried, then the floor once expired', () => {
    const tombs = new ChannelTombstones(1000, 100);
    tombs.bury('a', 7, 0);
    tombs.bury('b', 3, 500);
    expect(tombs.exhume('a')).toBe(7);
    expect(tombs.exhume('a')).toBe(0); // gone: the floor (nothing forgotten yet)
    tombs.bury('a', 9, 600);
    tombs.expire(1500); // b (500) expires, a (600) stays
    expect(tombs.size).toBe(1);
    expect(tombs.floor).toBe(3);
    expect(tombs.exhume('b')).toBe(3);
    tombs.expire(1600);
    expect(tombs.size).toBe(0);
    expect(tombs.floor).toBe(9);
  });

  it('folds the oldest into the floor beyond maxEntries', () => {
    const tombs = new ChannelTombstones(1_000_000, 2);
    tombs.bury('a', 5, 0);
    tombs.bury('b', 1, 1);
    tombs.bury('c', 2, 2);
    expect(tombs.size).toBe(2);
    expect(tombs.floor).toBe(5);
    expect(tombs.exhume('c')).toBe(2);
  });
});
