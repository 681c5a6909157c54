import { describe, expect, it } from 'vitest';
import { EventHistory, planReplay } from './event-history.ts';
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

describe('mergeSharedHistory', () => {
  it('takes shared entries before coverageFrom and local ones from it, in order, once', () => {
    const merged = mergeSharedHistory({
      ...base,
      local: local([10, 12]),
      afterSeq: 4,
      // Redis also returns 10 and 12; the local copies are the ones kept.
      shared: shared(4, [5, 7, 10, 12]),
    });
    const plan = planReplay([merged], 4, 1e9);
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
      expect(planReplay([merged], 4, 1e9).tooOld, name).toBe(true);
    }
  });
});
