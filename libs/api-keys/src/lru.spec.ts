import { growingLru } from './lru';

describe('growingLru', () => {
  it('holds at most max entries, evicting the least recently used', () => {
    const lru = growingLru<string, number>(3, 60_000);
    for (const k of ['a', 'b', 'c']) lru.set(k, 1);
    lru.get('a'); // b is now the least recently used
    lru.set('d', 1);
    expect([...lru.keys()].sort()).toEqual(['a', 'c', 'd']);
    expect(lru.size).toBe(3);
    for (let i = 0; i < 1000; i++) lru.set(`k${i}`, i);
    expect(lru.size).toBe(3);
    expect(lru.get('k999')).toBe(999);
  });

  it('expires entries after the ttl', async () => {
    const lru = growingLru<string, number>(10, 50);
    lru.set('a', 1);
    expect(lru.getRemainingTTL('a')).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 80));
    expect(lru.get('a')).toBeUndefined();
  });

  it('allocates nothing per possible entry up front (100,000-entry caches)', () => {
    const before = process.memoryUsage().heapUsed;
    const caches = Array.from({ length: 5 }, () => growingLru<string, number>(100_000, 60_000));
    const grown = process.memoryUsage().heapUsed - before;
    expect(caches).toHaveLength(5);
    // lru-cache given max: 100_000 takes ~4.4 MB each at construction.
    expect(grown).toBeLessThan(1024 * 1024);
  });
});
