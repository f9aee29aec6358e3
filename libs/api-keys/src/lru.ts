import { LRUCache } from 'lru-cache';

/**
 * An LRU of at most `max` entries, each for `ttlMs`, whose memory grows with its entries.
 * lru-cache given `max` allocates its tables for `max` entries up front (about 4.4 MB for
 * 100,000 with a TTL, whether one entry is ever set or not): five such caches were a
 * fifth of the gateway's heap at start. Counted by `maxSize` instead (each entry of size
 * 1), the same bound holds and the tables grow as entries come.
 */
export function growingLru<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(
  max: number,
  ttlMs: number,
): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: max, sizeCalculation: () => 1, ttl: ttlMs });
}
