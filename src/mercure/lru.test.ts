// BoundedLru, the bound of the Mercure hub's caches. A regression here looks like a cache growing
// past its bound, evicting the most recently used entry, or evictions going uncounted.
import { describe, expect, it } from 'vitest';
import { BoundedLru } from './lru.ts';

describe('BoundedLru', () => {
  it('never holds more than its bound and counts each eviction', () => {
    let evictions = 0;
    const lru = new BoundedLru<string, number>(3, () => evictions++);
    for (let i = 0; i < 10; i++) lru.set(`k${i}`, i);
    expect(lru.size).toBe(3);
    expect(evictions).toBe(7);
    expect([lru.get('k6'), lru.get('k7'), lru.get('k9')]).toEqual([undefined, 7, 9]);
  });

  it('evicts the least recently used: a get refreshes an entry', () => {
    const lru = new BoundedLru<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1);
    lru.set('c', 3);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    expect(lru.get('c')).toBe(3);
  });

  it('replacing a key neither grows it nor evicts another', () => {
    let evictions = 0;
    const lru = new BoundedLru<string, number>(2, () => evictions++);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('a', 10);
    expect(lru.size).toBe(2);
    expect(evictions).toBe(0);
    expect(lru.get('a')).toBe(10);
    expect(lru.get('b')).toBe(2);
  });

  it('a bound of 0 keeps nothing; delete and clear do not count as evictions', () => {
    let evictions = 0;
    const none = new BoundedLru<string, number>(0, () => evictions++);
    none.set('a', 1);
    expect(none.get('a')).toBeUndefined();
    const lru = new BoundedLru<string, number>(2, () => evictions++);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.delete('a');
    expect(lru.size).toBe(1);
    lru.clear();
    expect(lru.size).toBe(0);
    expect(evictions).toBe(0);
  });
});
