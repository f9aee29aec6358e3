import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { BcryptPool } from './bcrypt-pool';

/** Who asked for the compare: a login, or a legacy key's bcrypt fallback. */
export type BcryptCaller = 'login' | 'legacy_key';

/**
 * The one door to bcrypt for unauthenticated callers (login and the legacy key fallback):
 * at most BCRYPT_CONCURRENCY compares run at once and at most BCRYPT_QUEUE wait; beyond
 * that the caller gets 503 `auth_busy` at once, so a flood never builds a growing queue
 * and never fills libuv's thread pool (which DNS lookups and file I/O share). The compares
 * themselves run on low-priority worker threads (`compare`, BcryptPool: BCRYPT_NICE), so
 * they take only the CPU the request path leaves.
 */
@Injectable()
export class BcryptGate implements OnModuleDestroy {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  /** Counters since start (tests and the README's work bound read them). */
  readonly stats = { compares: 0, refused: 0, maxActive: 0 };

  private readonly pool: BcryptPool;

  constructor(
    private readonly config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    this.pool = new BcryptPool(config.BCRYPT_CONCURRENCY, config.BCRYPT_NICE);
  }

  onModuleDestroy(): Promise<void> {
    return this.pool.close();
  }

  /** One bcrypt compare through the gate, run on a low-priority worker thread. */
  compare(caller: BcryptCaller, plain: string, hash: string): Promise<boolean> {
    return this.run(caller, () => this.pool.compare(plain, hash));
  }

  get inFlight(): number {
    return this.active;
  }

  async run<T>(caller: BcryptCaller, work: () => Promise<T>): Promise<T> {
    if (this.active >= this.config.BCRYPT_CONCURRENCY) {
      if (this.waiting.length >= this.config.BCRYPT_QUEUE) {
        this.stats.refused++;
        this.metrics.bcrypt(caller, 'refused');
        throw new ApiError(
          503,
          'The server is busy checking credentials; retry in a moment',
          'server_error',
          'auth_busy',
          { 'Retry-After': '1' },
        );
      }
      // The slot is handed over by the finishing compare (active stays counted).
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    this.stats.maxActive = Math.max(this.stats.maxActive, this.active);
    this.stats.compares++;
    this.metrics.bcrypt(caller, 'run');
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
