import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LRUCache } from 'lru-cache';
import { AppConfig } from '@app/config';
import { RedisClient, RedisConnection, sendPipelined } from '@app/database';
import type { KeyPrincipal } from './key-principal';
import { growingLru } from './lru';

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
/** While the eviction subscription is down, an LRU entry older than this is not trusted. */
export const UNSUBSCRIBED_LRU_MS = 1000;
/** Back-off of the eviction retry queue: doubles from the first delay up to the cap. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 1000;

/**
 * Two cache levels for the key guard: an in-process LRU (seconds) and Redis (minutes),
 * plus a short negative cache for unknown keys. `evict` drops entries everywhere at once:
 * locally, in Redis, and (pub/sub) in every other instance's LRU.
 *
 * Revocation cannot be lost (README "Revocation delay"): an eviction Redis did not take
 * (DEL + PUBLISH failed) stays in a retry queue, retried with back-off and at once when the
 * connection is ready again; while this instance's subscription is down its LRU entries are
 * trusted for `UNSUBSCRIBED_LRU_MS` only, and the LRU is cleared once it is subscribed again.
 * The retry queue is kept in DATA_DIR, so an instance restarted before Redis is back still sends it.
 */
@Injectable()
export class KeyCache implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('KeyCache');
  private readonly instanceId = randomUUID();
  private readonly lru: LRUCache<string, KeyAuthEntry>;
  private readonly negative: LRUCache<string, true>;
  private subscriber?: RedisClient;
  private readonly delayed = new Set<NodeJS.Timeout>();
  /** Hashes whose eviction Redis has not confirmed yet (DEL + PUBLISH to retry). */
  private readonly pending = new Set<string>();
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = RETRY_FIRST_MS;
  private flushing = false;
  private closed = false;
  /** True while the eviction subscription is confirmed (no Redis: nothing to miss). */
  private subscribed = true;

  constructor(
    private readonly config: AppConfig,
    private readonly redis: RedisConnection,
  ) {
    this.lru = growingLru(100_000, Math.max(1, config.KEY_LRU_TTL_SECONDS) * 1000);
    this.negative = growingLru(100_000, Math.max(1, config.KEY_NEGATIVE_TTL_SECONDS) * 1000);
  }

  /** Where pending evictions survive a restart (the hashes only, never a key). */
  private get pendingFile(): string {
    return join(this.config.DATA_DIR, 'pending-key-evictions.json');
  }

  /** Keep the pending set on disk (empty: no file), so a restart still sends them. */
  private savePending(): void {
    try {
      if (!this.pending.size) return rmSync(this.pendingFile, { force: true });
      mkdirSync(this.config.DATA_DIR, { recursive: true });
      const tmp = `${this.pendingFile}.${this.instanceId}.tmp`;
      writeFileSync(tmp, JSON.stringify([...this.pending]));
      renameSync(tmp, this.pendingFile);
    } catch (e) {
      this.logger.warn(`could not save pending key evictions: ${(e as Error).message}`);
    }
  }

  private loadPending(): void {
    try {
      const hashes = JSON.parse(readFileSync(this.pendingFile, 'utf8')) as unknown;
      if (Array.isArray(hashes)) for (const h of hashes) if (typeof h === 'string') this.pending.add(h);
    } catch {
      // no file (the usual case) or unreadable: nothing pending
    }
  }

  async onModuleInit(): Promise<void> {
    const client = this.redis.client;
    if (!client) return;
    // Evictions a previous run could not send (Redis was away when it stopped) go out first.
    this.loadPending();
    if (this.pending.size) void this.flushPending();
    // Evictions that failed while Redis was away go out as soon as it is back.
    client.on('ready', () => void this.flushPending());
    this.subscribed = false;
    const sub = this.redis.subscriber();
    this.subscriber = sub;
    sub.on('error', () => undefined);
    // Down: evictions from other instances may be missed from now on.
    sub.on('close', () => (this.subscribed = false));
    sub.on('message', (_channel: string, message: string) => {
      try {
        const { hashes } = JSON.parse(message) as { from: string; hashes: string[] };
        for (const h of hashes) this.dropLocal(h);
      } catch {
        // ignore malformed messages
      }
    });
    // After a reconnect we may have missed evictions: once the subscription is confirmed
    // again, start cold (ioredis resubscribes too; SUBSCRIBE twice is harmless).
    sub.on('ready', () => void this.confirmSubscription(sub));
    await this.confirmSubscription(sub);
  }

  private async confirmSubscription(sub: RedisClient): Promise<void> {
    try {
      await sub.subscribe(EVICT_CHANNEL);
      this.lru.clear();
      this.subscribed = true;
    } catch {
      // still down: the next 'ready' tries again
    }
  }

  /** Whether the eviction subscription is up (LRU trusted for its full TTL). */
  get listening(): boolean {
    return this.subscribed;
  }

  /** Evictions waiting for Redis. */
  get pendingEvictions(): number {
    return this.pending.size;
  }

  async onModuleDestroy(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
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
    if (this.config.KEY_LRU_TTL_SECONDS <= 0) return undefined;
    if (!this.subscribed) {
      // Evictions may be missed: only an entry cached in the last second is trusted.
      const age = this.lruTtlMs - this.lru.getRemainingTTL(hash);
      if (age > UNSUBSCRIBED_LRU_MS) {
        this.lru.delete(hash);
        return undefined;
      }
    }
    return this.lru.get(hash);
  }

  private get lruTtlMs(): number {
    return Math.max(1, this.config.KEY_LRU_TTL_SECONDS) * 1000;
  }

  /** Redis level; a Redis failure is a miss (auth then goes to PostgreSQL). */
  async getShared(hash: string): Promise<KeyAuthEntry | undefined> {
    const client = this.redis.client;
    if (!client || this.config.KEY_REDIS_TTL_SECONDS <= 0) return undefined;
    try {
      const raw = (await sendPipelined(client, 'get', [redisKey(hash)])) as string | null;
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
    await sendPipelined(client, 'set', [
      redisKey(hash),
      JSON.stringify(entry),
      'EX',
      this.config.KEY_REDIS_TTL_SECONDS,
    ]).catch(() => undefined);
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
    if (!this.redis.client) return;
    try {
      await this.propagate(hashes);
    } catch (e) {
      for (const h of hashes) this.pending.add(h);
      this.savePending();
      this.logger.warn(
        `key eviction not yet in Redis (${(e as Error).message}); retrying until it is (${this.pending.size} pending)`,
      );
      this.scheduleRetry();
    }
  }

  /** DEL in Redis, then PUBLISH to every instance's LRU. Throws when Redis did not take it. */
  private async propagate(hashes: string[]): Promise<void> {
    const client = this.redis.client!;
    // One DEL per key: `apikey:<hash>` keys are spread over every slot of a cluster.
    await Promise.all(hashes.map((h) => sendPipelined(client, 'del', [redisKey(h)])));
    await client.publish(EVICT_CHANNEL, JSON.stringify({ from: this.instanceId, hashes }));
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer || !this.pending.size) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flushPending();
    }, this.retryDelay);
    this.retryTimer.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  /** Retry every pending eviction; on failure back off and try again (until Redis has them). */
  private async flushPending(): Promise<void> {
    if (this.closed || this.flushing || !this.pending.size) return;
    this.flushing = true;
    const hashes = [...this.pending];
    try {
      await this.propagate(hashes);
      for (const h of hashes) this.pending.delete(h);
      this.savePending();
      this.retryDelay = RETRY_FIRST_MS;
      this.logger.log(`${hashes.length} pending key eviction(s) propagated through Redis`);
    } catch {
      // still unreachable
    } finally {
      this.flushing = false;
    }
    this.scheduleRetry();
  }
}
