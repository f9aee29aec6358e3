import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { AppConfig } from '@app/config';
import { RedisClient, RedisConnection } from '@app/database';
import type { KeyPrincipal } from './key-principal';

/** What the caches hold for one lookup hash: the principal and the state checked on every hit. */
export interface KeyAuthEntry {
  principal: KeyPrincipal;
  /** epoch ms; the effective end of validity (expires_at, or the grace end of a previous key). */
  validUntil: number | null;
  revoked: boolean;
  tenantActive: boolean;
  userActive: boolean;
}

export const EVICT_CHANNEL = 'gateway:apikey:evict';
const redisKey = (hash: string) => `apikey:${hash}`;

/**
 * Two cache levels for the key guard: an in-process LRU (seconds) and Redis (minutes),
 * plus a short negative cache for unknown keys. `evict` drops entries everywhere at once:
 * locally, in Redis, and (pub/sub) in every other instance's LRU.
 */
@Injectable()
export class KeyCache implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('KeyCache');
  private readonly instanceId = randomUUID();
  private readonly lru: LRUCache<string, KeyAuthEntry>;
  private readonly negative: LRUCache<string, true>;
  private subscriber?: RedisClient;
  private readonly delayed = new Set<NodeJS.Timeout>();

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnection,
  ) {
    this.lru = new LRUCache({ max: 100_000, ttl: Math.max(1, config.KEY_LRU_TTL_SECONDS) * 1000 });
    this.negative = new LRUCache({ max: 100_000, ttl: Math.max(1, config.KEY_NEGATIVE_TTL_SECONDS) * 1000 });
  }

  async onModuleInit(): Promise<void> {
    const client = this.redis.client;
    if (!client) return;
    this.subscriber = this.redis.subscriber();
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (_channel: string, message: string) => {
      try {
        const { hashes } = JSON.parse(message) as { from: string; hashes: string[] };
        for (const h of hashes) this.dropLocal(h);
      } catch {
        // ignore malformed messages
      }
    });
    // After a reconnect we may have missed evictions: start cold.
    this.subscriber.on('ready', () => this.lru.clear());
    await this.subscriber.subscribe(EVICT_CHANNEL);
  }

  async onModuleDestroy(): Promise<void> {
    for (const timer of this.delayed) clearTimeout(timer);
    this.delayed.clear();
    const sub = this.subscriber;
    if (sub && sub.status !== 'end') await sub.quit().catch(() => sub.disconnect());
  }

  get sizes(): { lru: number; negative: number } {
    return { lru: this.lru.size, negative: this.negative.size };
  }

  isNegative(hash: string): boolean {
    return this.negative.has(hash);
  }

  setNegative(hash: string): void {
    if (this.config.KEY_NEGATIVE_TTL_SECONDS > 0) this.negative.set(hash, true);
  }

  getLocal(hash: string): KeyAuthEntry | undefined {
    return this.config.KEY_LRU_TTL_SECONDS > 0 ? this.lru.get(hash) : undefined;
  }

  /** Redis level; a Redis failure is a miss (auth then goes to PostgreSQL). */
  async getShared(hash: string): Promise<KeyAuthEntry | undefined> {
    const client = this.redis.client;
    if (!client || this.config.KEY_REDIS_TTL_SECONDS <= 0) return undefined;
    try {
      const raw = await client.get(redisKey(hash));
      if (!raw) return undefined;
      const entry = JSON.parse(raw) as KeyAuthEntry;
      if (this.config.KEY_LRU_TTL_SECONDS > 0) this.lru.set(hash, entry);
      return entry;
    } catch {
      return undefined;
    }
  }

  async set(hash: string, entry: KeyAuthEntry): Promise<void> {
    if (this.config.KEY_LRU_TTL_SECONDS > 0) this.lru.set(hash, entry);
    const client = this.redis.client;
    if (!client || this.config.KEY_REDIS_TTL_SECONDS <= 0) return;
    await client
      .set(redisKey(hash), JSON.stringify(entry), 'EX', this.config.KEY_REDIS_TTL_SECONDS)
      .catch(() => undefined);
  }

  private dropLocal(hash: string): void {
    this.lru.delete(hash);
    this.negative.delete(hash);
  }

  /**
   * Drop these keys from every cache level on every instance. Repeated once a second
   * later ("delayed double delete"): a lookup that read the row just before the change
   * and writes its stale entry back after the first eviction is dropped by the second.
   */
  async evict(hashes: string[]): Promise<void> {
    await this.evictNow(hashes);
    const timer = setTimeout(() => {
      this.delayed.delete(timer);
      void this.evictNow(hashes);
    }, 1000);
    timer.unref();
    this.delayed.add(timer);
  }

  private async evictNow(hashes: string[]): Promise<void> {
    if (!hashes.length) return;
    for (const h of hashes) this.dropLocal(h);
    const client = this.redis.client;
    if (!client) return;
    try {
      // One DEL per key: `apikey:<hash>` keys are spread over every slot of a cluster.
      await Promise.all(hashes.map((h) => client.del(redisKey(h))));
      await client.publish(EVICT_CHANNEL, JSON.stringify({ from: this.instanceId, hashes }));
    } catch (e) {
      // The LRU TTL (seconds) bounds how long another instance can still serve the entry.
      this.logger.warn(`could not propagate key eviction through Redis: ${(e as Error).message}`);
    }
  }
}
