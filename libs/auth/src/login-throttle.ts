import { Injectable, Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import {
  RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import { AppConfig } from '@app/config';
import { RedisConnection } from '@app/database';
import { ApiError } from '@app/observability';

/** The account key: a hash of the normalised email (no address in Redis; the same for unknown emails). */
const accountKey = (email: string) =>
  createHash('sha256').update(email.trim().toLowerCase()).digest('hex').slice(0, 32);

/**
 * Login throttling (README "Abuse resistance"): fixed windows of LOGIN_WINDOW_SECONDS, per
 * account (LOGIN_ACCOUNT_LIMIT) and per client address (LOGIN_ADDRESS_LIMIT). Every attempt
 * takes its point BEFORE the password is checked, so a concurrent burst cannot get past the
 * count; a success gives the points back (the account's counter restarts). With Redis the
 * counters are shared by every instance (rate-limiter-flexible: one key per counter,
 * `login:acct:<hash>` / `login:addr:<address>`, one single-key script per call: Cluster-safe);
 * without it, or while Redis fails, they are in process.
 */
@Injectable()
export class LoginThrottle {
  private readonly logger = new Logger('LoginThrottle');
  private readonly account: RateLimiterAbstract;
  private readonly address: RateLimiterAbstract;

  constructor(config: AppConfig, redis: RedisConnection) {
    const duration = config.LOGIN_WINDOW_SECONDS;
    const make = (keyPrefix: string, points: number): RateLimiterAbstract => {
      const memory = new RateLimiterMemory({ keyPrefix, points, duration });
      const client = redis.client;
      if (!client) return memory;
      return new RateLimiterRedis({
        storeClient: client,
        keyPrefix,
        points,
        duration,
        rejectIfRedisNotReady: true,
        insuranceLimiter: memory,
      });
    };
    this.account = make('login:acct', config.LOGIN_ACCOUNT_LIMIT);
    this.address = make('login:addr', config.LOGIN_ADDRESS_LIMIT);
  }

  /**
   * Takes one point from the account and from the address; 429 with Retry-After when either
   * is spent. The answer does not depend on whether the email exists.
   */
  async admit(email: string, client: string): Promise<void> {
    const results = await Promise.allSettled([
      this.account.consume(accountKey(email)),
      this.address.consume(client),
    ]);
    let waitMs = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      if (r.reason instanceof RateLimiterRes) waitMs = Math.max(waitMs, r.reason.msBeforeNext);
      // Any other error: the store failed and had no insurance left; do not lock honest users out.
      else this.logger.warn(`login throttle store failed: ${(r.reason as Error)?.message}`);
    }
    if (waitMs > 0) {
      throw new ApiError(
        429,
        'Too many login attempts; try again later',
        'rate_limit_exceeded',
        'too_many_login_attempts',
        { 'Retry-After': String(Math.max(1, Math.ceil(waitMs / 1000))) },
      );
    }
  }

  /** A successful login: the account's counter restarts and the address gets its point back. */
  async succeeded(email: string, client: string): Promise<void> {
    await Promise.allSettled([this.account.delete(accountKey(email)), this.address.reward(client, 1)]);
  }
}
