import { describe, expect, it } from 'vitest';
import { EventHistory, planReplay, replayCursor } from './event-history.ts';
import { mergeSharedHistory, type SharedHistory } from './shared-history.ts';

function local(seqs: number[], evictedMaxSeq = 0): EventHistory {
  const h = new EventHistory(evictedMaxSeq);
  for (const seq of seqs) {
    h.push(
      { seq, time: 0, publisherId: undefined, rank: 0, frame: Buffer.from(`local ${seq}\n`) },
      100,
    );
  }
  return h;
}

function shared(afterSeq: number, seqs: number[], gaps: string[] = []): SharedHistory {
  return {
    afterSeq,
    entries: new Map([
      [
        'orders',
        seqs.map((seq) => ({
          seq,
          time: 0,
          rank: 0,
          event: undefined,
          publisherId: undefined,
          data: Buffer.from(`shared ${seq}`),
        })),
      ],
    ]),
    gaps: new Set(gaps),
  };
}

const base = { channel: 'orders', epoch: 'e1', coverageFrom: 10 };
const after = (seq: number) => ({ seq, rank: Infinity, channel: undefined, channels: undefined });

describe('mergeSharedHistory', () => {
  it('takes shared entries before coverageFrom and local ones from it, in order, once', () => {
    const merged = mergeSharedHistory({
      ...base,
      local: local([10, 12]),
      afterSeq: 4,
      // Redis also returns 10 and 12; the local copies are the ones kept.
      shared: shared(4, [5, 7, 10, 12]),
    });
    const plan = planReplay([{ name: 'orders', history: merged }], after(4), 1e9);
    expect(plan.tooOld).toBe(false);
    expect(plan.entries.map((e) => e.seq)).toEqual([5, 7, 10, 12]);
    expect(plan.entries[0]?.frame.toString()).toBe('id: e1-5@orders\ndata: shared 5\n\n');
    expect(plan.entries[2]?.frame.toString()).toBe('local 10\n');
  });

  it('reports a gap when Redis could not be read, trimmed the channel, or the local copy evicted', () => {
    const cases: Array<[string, SharedHistory | undefined, EventHistory]> = [
      ['no shared history', undefined, local([10])],
      ['a gap in Redis', shared(4, [7], ['orders']), local([10])],
      ['fetched for another position', shared(3, [7]), local([10])],
      ['local eviction past coverageFrom', shared(4, [7]), local([12], 11)],
    ];
    for (const [name, fetched, history] of cases) {
      const merged = mergeSharedHistory({ ...base, local: history, afterSeq: 4, shared: fetched });
      expect(planReplay([{ name: 'orders', history: merged }], after(4), 1e9).tooOld, name).toBe(
        true,
      );
    }
  });

  it('a resume between two frames of one event gets its later channels from the shared history', () => {
    // Event 4 went to [orders, audit] before this node joined (coverageFrom 10); the client got
    // 4@orders. Redis returns entries from seq 4 itself.
    const fetched: SharedHistory = {
      afterSeq: 4,
      entries: new Map([
        ['orders', [sharedEntry(4, 0), sharedEntry(6, 0)]],
        ['audit', [sharedEntry(4, 1), sharedEntry(5, 0)]],
      ]),
      gaps: new Set(),
    };
    const sources = ['orders', 'audit'].map((name) => ({
      name,
      history: mergeSharedHistory({
        ...base,
        channel: name,
        local: local([]),
        afterSeq: 4,
        shared: fetched,
      }),
    }));
    const plan = planReplay(sources, replayCursor(sources, 4, 'orders'), 1e9);
    expect(plan.tooOld).toBe(false);
    expect(plan.entries.map((e) => e.frame.toString().split('\n')[0])).toEqual([
      'id: e1-4@audit',
      'id: e1-5@audit',
      'id: e1-6@orders',
    ]);
  });

  it('leaves out what the resuming stream`s socket published; reports an entry of the resumed event trimmed in Redis', () => {
    const fetched: SharedHistory = {
      afterSeq: 4,
      entries: new Map([['orders', [sharedEntry(5, 0, '1.2'), sharedEntry(6, 0)]]]),
      gaps: new Set(),
      trimmedAt: new Set(['orders']),
    };
    const merged = mergeSharedHistory({
      ...base,
      local: local([]),
      afterSeq: 4,
      shared: fetched,
      socketId: '1.2',
    });
    expect(merged.since(0).map((e) => e.seq)).toEqual([6]);
    expect(merged.evictedMaxSeq).toBe(4);
    const sources = [
      { name: 'orders', history: merged },
      { name: 'audit', history: local([]) },
    ];
    // Cut after 4@audit: orders' frame of event 4 may have been due and is gone.
    expect(planReplay(sources, replayCursor(sources, 4, 'audit'), 1e9).tooOld).toBe(true);
    // Cut after 4@orders: that frame was the one seen.
    expect(planReplay(sources, replayCursor(sources, 4, 'orders'), 1e9).tooOld).toBe(false);
  });
});

function sharedEntry(seq: number, rank: number, socket?: string) {
  return {
    seq,
    time: 0,
    rank,
    event: undefined,
    publisherId: undefined,
    data: Buffer.from(`shared ${seq}`),
    ...(socket === undefined ? {} : { socket }),
  };
}
