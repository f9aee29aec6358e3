import { Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { AppConfig } from '@app/config';

const WINDOW_MS = 60_000;

/**
 * Failed key attempts per client address in a fixed one-minute window; past
 * AUTH_FAILURE_LIMIT the client is answered 429 until the window ends (per instance).
 */
@Injectable()
export class AuthFailureLimiter {
  private readonly windows = new LRUCache<string, { start: number; count: number }>({
    max: 50_000,
    ttl: WINDOW_MS,
  });

  constructor(private readonly config: AppConfig) {}

  /** Seconds to wait, or 0 when the client may try. */
  retryAfter(client: string, now = Date.now()): number {
    const w = this.windows.get(client);
    if (!w || now - w.start >= WINDOW_MS || w.count < this.config.AUTH_FAILURE_LIMIT) return 0;
    return Math.max(1, Math.ceil((w.start + WINDOW_MS - now) / 1000));
  }

  fail(client: string, now = Date.now()): void {
    const w = this.windows.get(client);
    if (!w || now - w.start >= WINDOW_MS) this.windows.set(client, { start: now, count: 1 });
    else w.count++;
  }
}
