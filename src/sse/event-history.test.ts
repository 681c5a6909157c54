// Event ids, the per-channel history ring (count and age bounds, publisherId index), replay
// planning across channels (one frame per event and channel, resumable between two frames of one
// event), and tombstones of deleted channels.
import { describe, expect, it } from 'vitest';
import {
  ChannelTombstones,
  EventHistory,
  formatEventId,
  parseEventId,
  planReplay,
  replayCursor,
  type EventRecord,
  type HistoryEntry,
  type ReplaySource,
} from './event-history.ts';

function entry(seq: number, time = seq, extra: Partial<HistoryEntry> = {}): HistoryEntry {
  return { seq, time, publisherId: undefined, rank: 0, frame: Buffer.from(`e${seq}\n`), ...extra };
}

const record = (seq: number, channels: string[]): EventRecord => ({
  seq,
  channels,
  data: Buffer.from(`d${seq}`),
  event: undefined,
  privateField: false,
  private: false,
  mercureId: undefined,
  retryMs: undefined,
});

/** Histories of `names` holding the frames of `events` ([seq, channels]) as a hub stores them:
 * one entry per channel, with the publish rank and the shared record. */
function histories(names: string[], events: Array<[number, string[]]>, maxSize = 100) {
  const sources = names.map((name) => ({ name, history: new EventHistory() }));
  for (const [seq, channels] of events) {
    const rec = record(seq, channels);
    for (const source of sources) {
      const rank = channels.indexOf(source.name);
      if (rank === -1) continue;
      const frame = Buffer.from(`${seq}@${source.name}\n`);
      source.history.push({ ...entry(seq), rank, frame, record: rec }, maxSize);
    }
  }
  return sources;
}

const frames = (plan: { entries: HistoryEntry[] }): string[] =>
  plan.entries.map((e) => e.frame.toString().trim());

/** Sources of bare histories (no names needed by the case). */
const bare = (...list: EventHistory[]): ReplaySource[] =>
  list.map((history, i) => ({ name: `h${i}`, history }));
const after = (seq: number) => ({ seq, rank: Infinity, channel: undefined, channels: undefined });

describe('event ids', () => {
  it.each([
    ['abc12345-7', { epoch: 'abc12345', seq: 7 }],
    ['abc12345-7@orders', { epoch: 'abc12345', seq: 7, channel: 'orders' }],
    // Pusher's charset: '@' may be in the name; the first '@' separates.
    [
      'abc12345-7@private-App.User.1@x',
      { epoch: 'abc12345', seq: 7, channel: 'private-App.User.1@x' },
    ],
    ['abc12345-7@@a,b;c=d', { epoch: 'abc12345', seq: 7, channel: '@a,b;c=d' }],
    ['abc12345-7@', { epoch: 'abc12345', seq: 7 }],
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
    expect(parseEventId(`${formatEventId('e1', 42)}@ch`)).toEqual({
      epoch: 'e1',
      seq: 42,
      channel: 'ch',
    });
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
  it('one frame per event and channel, in seq then publish-rank order', () => {
    const sources = histories(
      ['a', 'b', 'c'],
      [
        [1, ['a']],
        [2, ['x', 'b', 'a']],
        [3, ['c', 'a', 'b']],
      ],
    );
    const plan = planReplay(sources, after(0), 1 << 20);
    expect(plan.tooOld).toBe(false);
    expect(frames(plan)).toEqual(['1@a', '2@b', '2@a', '3@c', '3@a', '3@b']);
  });

  it.each([
    // [resume id channel, frames replayed]: the frames of seq 2 ranked after the cursor's, then 3.
    ['b', ['2@a', '3@c', '3@a', '3@b']],
    ['a', ['3@c', '3@a', '3@b']],
    ['x', ['2@b', '2@a', '3@c', '3@a', '3@b']], // x is rank 0 (not subscribed now): b, a follow
    [undefined, ['3@c', '3@a', '3@b']], // no channel: the whole event was seen
    ['zzz', ['3@c', '3@a', '3@b']], // a channel the event did not go to: the whole event
  ])('resumes from seq 2 @%s with the later channels of that event', (channel, expected) => {
    const sources = histories(
      ['a', 'b', 'c'],
      [
        [1, ['a']],
        [2, ['x', 'b', 'a']],
        [3, ['c', 'a', 'b']],
      ],
    );
    const plan = planReplay(sources, replayCursor(sources, 2, channel), 1 << 20);
    expect(plan.tooOld).toBe(false);
    expect(frames(plan)).toEqual(expected);
  });

  it('without records (old state file, shared history) the rank comes from the channel`s own entry', () => {
    const sources = histories(['a', 'b'], [[5, ['a', 'b']]]).map(({ name, history }) => {
      const plain = new EventHistory();
      for (const e of history.since(0)) {
        plain.push(
          { seq: e.seq, time: e.time, publisherId: undefined, rank: e.rank, frame: e.frame },
          10,
        );
      }
      return { name, history: plain };
    });
    expect(frames(planReplay(sources, replayCursor(sources, 5, 'a'), 1 << 20))).toEqual(['5@b']);
    expect(frames(planReplay(sources, replayCursor(sources, 5, 'b'), 1 << 20))).toEqual([]);
  });

  it('reports too_old when any channel evicted a later event', () => {
    const a = new EventHistory();
    const b = new EventHistory();
    for (let seq = 1; seq <= 5; seq++) a.push(entry(seq), 2);
    b.push(entry(6), 2);
    expect(planReplay(bare(a, b), after(2), 1 << 20)).toMatchObject({ tooOld: true });
    expect(planReplay(bare(a, b), after(3), 1 << 20)).toMatchObject({ tooOld: false });
  });

  it('a frame of the resumed event itself that was evicted is a gap only when it was still due', () => {
    // history_size 1: event 2 on [a, b] is evicted from both by event 3 on [a] and 4 on [b].
    const sources = histories(
      ['a', 'b'],
      [
        [2, ['a', 'b']],
        [3, ['a']],
        [4, ['b']],
      ],
      1,
    );
    // Cut after 2@a: 2@b was due and is gone.
    const fromA = replayCursor(sources, 2, 'a');
    expect(planReplay(sources, fromA, 1 << 20)).toMatchObject({ tooOld: true });
    // Cut after 2@b: 2@a came before it, nothing is missing.
    const fromB = { seq: 2, rank: 1, channel: 'b', channels: ['a', 'b'] };
    expect(planReplay(sources, fromB, 1 << 20).tooOld).toBe(false);
    expect(frames(planReplay(sources, fromB, 1 << 20))).toEqual(['3@a', '4@b']);
    // Unknown channel list (nothing of event 2 held): conservative for every other channel.
    expect(replayCursor(sources, 2, 'b')).toMatchObject({ rank: -1, channels: undefined });
    expect(planReplay(sources, replayCursor(sources, 2, 'b'), 1 << 20).tooOld).toBe(true);
    // The whole event seen: nothing of it is due.
    expect(planReplay(sources, after(2), 1 << 20).tooOld).toBe(false);
  });

  it('skips what the caller excludes (socket, private) without a gap', () => {
    const sources = histories(
      ['a', 'b'],
      [
        [1, ['a', 'b']],
        [2, ['b']],
      ],
    );
    const plan = planReplay(
      sources,
      after(0),
      1 << 20,
      (e, source) => e.seq === 1 && source.name === 'b',
    );
    expect(frames(plan)).toEqual(['1@a', '2@b']);
    expect(plan.tooOld).toBe(false);
  });

  it('keeps only the newest entries that fit the byte budget, and says so', () => {
    const a = new EventHistory();
    for (let seq = 1; seq <= 10; seq++) a.push(entry(seq), 100); // 3 bytes each ("eN\n")
    const plan = planReplay(bare(a), after(0), 10);
    expect(plan.tooOld).toBe(true);
    expect(plan.entries.map((e) => e.seq)).toEqual([8, 9, 10]);
  });

  it('a record that lists one channel only (rebuilt from one shared stream) is not taken for the whole event', () => {
    const a = new EventHistory();
    const b = new EventHistory();
    // Event 7 went to [a, b]; b's entry carries a record that knows b alone (rank 1 there).
    a.push({ ...entry(7), rank: 0, frame: Buffer.from('7@a\n') }, 10);
    b.push({ ...entry(7), rank: 1, frame: Buffer.from('7@b\n'), record: record(7, ['b']) }, 10);
    const sources = [
      { name: 'a', history: a },
      { name: 'b', history: b },
    ];
    expect(replayCursor(sources, 7, 'a')).toMatchObject({ rank: 0 });
    expect(frames(planReplay(sources, replayCursor(sources, 7, 'a'), 1 << 20))).toEqual(['7@b']);
  });
});

describe('EventHistory.at', () => {
  it('finds the entry of a seq, or nothing', () => {
    const h = new EventHistory();
    for (const seq of [2, 4, 6]) h.push(entry(seq), 10);
    expect(h.at(4)?.seq).toBe(4);
    expect(h.at(5)).toBeUndefined();
    expect(h.at(1)).toBeUndefined();
    expect(h.at(7)).toBeUndefined();
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
