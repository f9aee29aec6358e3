import { Injectable, Logger, BeforeApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { ApiKeysRepository } from './api-keys.repository';

/** At shutdown, last_used_at gets this long to be written (it is informational). */
const SHUTDOWN_FLUSH_MS = 1000;

/**
 * last_used_at without a database write per request: remembered in memory and written
 * in one UPDATE every few seconds (and on shutdown).
 */
@Injectable()
export class LastUsedTracker implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('LastUsed');
  private pending = new Map<string, Date>();
  private timer?: NodeJS.Timeout;
  static readonly FLUSH_MS = 5000;

  constructor(private readonly keys: ApiKeysRepository) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), LastUsedTracker.FLUSH_MS).unref();
  }

  touch(keyId: string): void {
    this.pending.set(keyId, new Date());
  }

  async flush(): Promise<void> {
    if (!this.pending.size) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.keys.touchLastUsed([...batch.entries()]);
    } catch (e) {
      // Keep the newest timestamps for the next try; last_used_at is informational.
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
      this.logger.warn(`could not record last_used_at: ${(e as Error).message}`);
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    // Informational: a PostgreSQL that does not answer must not hold the shutdown (and the
    // ledger's flush after it) past the grace period.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.flush(),
      new Promise((r) => {
        timer = setTimeout(r, SHUTDOWN_FLUSH_MS);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
}
