import { Injectable } from '@nestjs/common';
import type { LRUCache } from 'lru-cache';
import { AppConfig } from '@app/config';
import { ApiError, AuthThrottleReason, MetricsService } from '@app/observability';
import { growingLru } from './lru';

/** Fixed-window counters with a bounded memory (an LRU of windows). */
class Windows {
  private readonly windows: LRUCache<string, { start: number; count: number }>;

  constructor(
    private readonly windowMs: number,
    private readonly limit: () => number,
    max: number,
  ) {
    this.windows = growingLru(max, windowMs);
  }

  /** Takes a point; returns the seconds to wait (0 = taken). */
  take(key: string, now: number): number {
    const w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      this.windows.set(key, { start: now, count: 1 });
      return 0;
    }
    if (w.count >= this.limit()) return Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000));
    w.count++;
    return 0;
  }

  /** Gives a point back (the work it paid for succeeded). */
  give(key: string): void {
    const w = this.windows.get(key);
    if (w && w.count > 0) w.count--;
  }
}

/** What a costly key lookup holds until it knows whether it succeeded. */
export interface LookupTicket {
  client: string;
  prefix: string;
}

/**
 * Throttles only the key checks that cost something (README "Abuse resistance"): a cache
 * miss that goes to PostgreSQL, and the legacy bcrypt fallback. Cheap refusals (bad
 * checksum, negative cache) and cache hits never touch it. A point is taken BEFORE the
 * work, so a concurrent burst is bounded; a success gives it back, so the counters count
 * failures (and work in flight), never honest traffic. Per instance, in process:
 *
 * - per (client address, key prefix): AUTH_FAILURE_LIMIT a minute. A valid key is never
 *   refused because other keys failed behind the same address: they have other prefixes.
 * - globally: AUTH_FAILURE_GLOBAL_LIMIT a second, whatever the addresses.
 * - legacy fallback, per key prefix over all addresses: LEGACY_PREFIX_FAILURE_LIMIT a
 *   minute, then the prefix cools down to one fallback a second until the minute ends.
 */
@Injectable()
export class AuthFailureLimiter {
  private readonly perPrefix: Windows;
  private readonly global: Windows;
  private readonly legacy: Windows;
  private readonly legacySlowLane: Windows;

  constructor(
    config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    this.perPrefix = new Windows(60_000, () => config.AUTH_FAILURE_LIMIT, 100_000);
    this.global = new Windows(1_000, () => config.AUTH_FAILURE_GLOBAL_LIMIT, 1);
    this.legacy = new Windows(60_000, () => config.LEGACY_PREFIX_FAILURE_LIMIT, 100_000);
    this.legacySlowLane = new Windows(1_000, () => 1, 100_000);
  }

  private refuse(reason: AuthThrottleReason, wait: number, message: string): ApiError {
    this.metrics.authThrottle(reason);
    return new ApiError(429, message, 'rate_limit_exceeded', 'too_many_auth_failures', {
      'Retry-After': String(wait),
    });
  }

  /** Before a database lookup: a point per (client, prefix) and a global one, or 429. */
  beginLookup(client: string, prefix: string, now = Date.now()): LookupTicket {
    const key = `${client} ${prefix}`;
    const wait = this.perPrefix.take(key, now);
    if (wait > 0)
      throw this.refuse(
        'address_prefix',
        wait,
        'Too many failed attempts with this API key prefix from your address; try again later',
      );
    const globalWait = this.global.take('*', now);
    if (globalWait > 0) {
      this.perPrefix.give(key);
      throw this.refuse('global', globalWait, 'Too many failed API key attempts; try again later');
    }
    return { client, prefix };
  }

  /** The lookup found the key (valid or not, e.g. revoked: later answers come from the caches). */
  lookupSucceeded(t: LookupTicket): void {
    this.perPrefix.give(`${t.client} ${t.prefix}`);
    this.global.give('*');
  }

  /**
   * Before a legacy bcrypt fallback: a point for the prefix. Past the limit the prefix cools
   * down to one fallback a second until its minute ends (so the key's holder still gets in,
   * within a second or so of the flood stopping), else 429 with Retry-After: 1.
   */
  beginLegacy(prefix: string, now = Date.now()): void {
    if (this.legacy.take(prefix, now) === 0) return;
    if (this.legacySlowLane.take(prefix, now) > 0)
      throw this.refuse(
        'legacy_prefix',
        1,
        'Too many failed attempts with this API key prefix; it is cooling down, try again later',
      );
  }

  legacySucceeded(prefix: string): void {
    this.legacy.give(prefix);
  }
}
