import { describe, expect, it } from 'vitest';
import { DEFAULT_PER_REQUEST_CONNECTIONS, planPool } from './pool-plan.ts';

describe('planPool', () => {
  it.each([
    // keepAlive, poolSize, managed, expected keepAlive, expected cap
    ['auto', 0, null, false, DEFAULT_PER_REQUEST_CONNECTIONS],
    ['auto', 5, null, true, 5],
    ['auto', 0, 8, true, 8],
    ['auto', 4, 8, true, 4],
    ['on', 0, null, true, DEFAULT_PER_REQUEST_CONNECTIONS],
    ['off', 0, 8, false, 8],
    ['off', 12, null, false, 12],
  ] as const)(
    'keep_alive=%s pool_size=%i managed=%s -> keepAlive %s, cap %i',
    (keepAlive, poolSize, managedMaxChildren, expectKeep, expectCap) => {
      const plan = planPool({ keepAlive, poolSize, managedMaxChildren });
      expect(plan.keepAlive).toBe(expectKeep);
      expect(plan.maxConnections).toBe(expectCap);
      expect(plan.reason.length).toBeGreaterThan(10);
    },
  );

  it('an external pool of unknown size never gets keep-alive by default (the 60 s stall)', () => {
    const plan = planPool({ keepAlive: 'auto', poolSize: 0, managedMaxChildren: null });
    expect(plan.keepAlive).toBe(false);
    expect(plan.reason).toContain('pool_size');
  });
});
