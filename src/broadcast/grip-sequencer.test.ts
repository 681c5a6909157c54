/**
 * Pushpin's sequencing of published items (its Sequencer): duplicates by id, prev-id chains put
 * back in order, items that wait too long sent anyway, the bounds on what may wait. A recurrence
 * of a bug here shows as items out of order, lost, or sent twice.
 */
import { describe, expect, it } from 'vitest';
import {
  CHANNEL_PENDING_MAX,
  GripSequencer,
  type SequencedItem,
  type SequencerLimits,
} from './grip-sequencer.ts';

interface It extends SequencedItem {
  name: string;
}

function item(name: string, id?: string, prevId?: string, channel = 'c', noSeq = false): It {
  return { name, channel, id, prevId, noSeq, bytes: 10 };
}

function setup(limits: Partial<SequencerLimits> = {}): {
  seq: GripSequencer<It>;
  add(i: It, now?: number): string;
  expire(now: number): string[];
} {
  const all: SequencerLimits = {
    waitMs: 5000,
    idCacheTtlMs: 60_000,
    maxPendingBytes: 1000,
    ...limits,
  };
  const seq = new GripSequencer<It>(() => all);
  return {
    seq,
    add: (i, now = 0) => {
      const { outcome, ready } = seq.add(i, now);
      return [outcome, ...ready.map((r) => `${r.item.name}:${r.outcome}`)].join(' ');
    },
    expire: (now) => seq.expire(now).map((r) => `${r.item.name}:${r.outcome}`),
  };
}

describe('GripSequencer', () => {
  it('sends items in arrival order when each names the previous one', () => {
    const s = setup();
    expect(s.add(item('a', '1'))).toBe('sent a:sent');
    expect(s.add(item('b', '2', '1'))).toBe('sent b:sent');
    expect(s.add(item('c', '3', '2'))).toBe('sent c:sent');
  });

  it('sends at once an item whose channel has no last id (nothing to wait for)', () => {
    const s = setup();
    expect(s.add(item('b', '2', '1'))).toBe('sent b:sent');
  });

  it('holds an item that arrived before the one it follows, then sends both in order', () => {
    const s = setup();
    s.add(item('a', '1'));
    expect(s.add(item('c', '3', '2'))).toBe('pending');
    expect(s.add(item('d', '4', '3'))).toBe('pending');
    expect(s.seq.pending).toBe(2);
    expect(s.add(item('b', '2', '1'))).toBe('sent b:sent c:reordered d:reordered');
    expect(s.seq.pending).toBe(0);
  });

  it('sends a held item after waitMs without its predecessor, then what waits on it', () => {
    const s = setup({ waitMs: 100 });
    s.add(item('a', '1'), 0);
    expect(s.add(item('c', '3', '2'), 10)).toBe('pending');
    expect(s.add(item('d', '4', '3'), 20)).toBe('pending');
    expect(s.seq.nextDue()).toBe(110);
    expect(s.expire(109)).toEqual([]);
    expect(s.expire(110)).toEqual(['c:expired', 'd:reordered']);
    // The channel's last id is now d's: its successor goes at once.
    expect(s.add(item('e', '5', '4'), 200)).toBe('sent e:sent');
  });

  it('drops an item whose id was seen on its channel within the TTL (not on another channel)', () => {
    const s = setup({ idCacheTtlMs: 1000 });
    expect(s.add(item('a', '1'), 0)).toBe('sent a:sent');
    expect(s.add(item('a again', '1'), 500)).toBe('duplicate');
    expect(s.add(item('other channel', '1', undefined, 'd'), 500)).toBe('sent other channel:sent');
    expect(s.add(item('a later', '1'), 1000)).toBe('sent a later:sent');
  });

  it('keeps no ids with idCacheTtlMs 0, and holds nothing with waitMs 0', () => {
    const s = setup({ idCacheTtlMs: 0, waitMs: 0 });
    s.add(item('a', '1'));
    expect(s.add(item('a again', '1'))).toBe('sent a again:sent');
    expect(s.add(item('z', '9', '8'))).toBe('sent z:sent');
  });

  it('drops a second item waiting on the same prev-id, as Pushpin', () => {
    const s = setup();
    s.add(item('a', '1'));
    expect(s.add(item('c', '3', '2'))).toBe('pending');
    expect(s.add(item('c2', '3b', '2'))).toBe('dropped');
  });

  it('bounds what waits: items per channel and bytes in all', () => {
    const s = setup({ maxPendingBytes: 1_000_000 });
    s.add(item('a', '0'));
    for (let i = 0; i < CHANNEL_PENDING_MAX; i++) {
      expect(s.add(item(`w${i}`, `x${i}`, `p${i}`))).toBe('pending');
    }
    expect(s.add(item('one more', 'y', 'q'))).toBe('dropped');
    expect(s.add(item('other channel', 'y', 'q', 'd'))).toBe('sent other channel:sent');
    const small = setup({ maxPendingBytes: 25 });
    small.add(item('a', '0'));
    expect(small.add(item('w1', 'x1', 'p1'))).toBe('pending');
    expect(small.add(item('w2', 'x2', 'p2'))).toBe('pending');
    expect(small.add(item('w3', 'x3', 'p3'))).toBe('dropped');
  });

  it('an item without id clears the last id: the next one goes at once', () => {
    const s = setup();
    s.add(item('a', '1'));
    s.add(item('anonymous'));
    expect(s.add(item('b', '2', 'whatever'))).toBe('sent b:sent');
  });

  it('no-seq items go at once and leave the last id alone', () => {
    const s = setup();
    s.add(item('a', '1'));
    expect(s.add(item('n', 'n1', 'zzz', 'c', true))).toBe('sent n:sent');
    expect(s.add(item('b', '2', '1'))).toBe('sent b:sent');
  });
});
