import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { RefusalTally, RefusalTallyEntry } from '@app/observability';
import { localDay } from '../periods';
import { RefusalDayCount, RefusalsRepository } from './refusals.repository';

const MAX_BACKOFF_MS = 30_000;

/**
 * Writes the refusal tally (counted in memory where the gateway refuses) to refusal_counts
 * every LEDGER_FLUSH_MS, one upsert per flush, summed per local day; never on a request's
 * path. A failed write gives the counts back to the tally (retried with back-off); the
 * shutdown writes what is left once. Counts are best-effort figures for the usage page: a
 * killed instance loses at most one interval of them (the ledger, not this, is billing).
 */
@Injectable()
export class RefusalFlusher implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('Refusals');
  private timer?: NodeJS.Timeout;
  private failures = 0;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly tally: RefusalTally,
    private readonly repo: RefusalsRepository,
    private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.schedule(this.config.LEDGER_FLUSH_MS);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.flush().catch((e: Error) =>
      this.logger.warn(`refusal counts not written at shutdown: ${e.message}`),
    );
  }

  /** Writes everything counted so far (one statement); on failure the counts go back to the tally. */
  flush(): Promise<void> {
    const run = this.running.then(async () => {
      const drained = this.tally.drain();
      if (!drained.length) return;
      try {
        await this.repo.add(this.byDay(drained));
      } catch (e) {
        this.tally.restore(drained);
        throw e;
      }
    });
    this.running = run.catch(() => undefined);
    return run;
  }

  private byDay(entries: RefusalTallyEntry[]): RefusalDayCount[] {
    const out = new Map<string, RefusalDayCount>();
    const days = new Map<number, string>();
    for (const e of entries) {
      let day = days.get(e.minute);
      if (!day) days.set(e.minute, (day = localDay(e.minute * 60_000, this.config.QUOTA_TIMEZONE)));
      const k = `${e.tenantId} ${day} ${e.reason}`;
      const have = out.get(k);
      if (have) have.count += e.count;
      else out.set(k, { tenantId: e.tenantId, day, reason: e.reason, count: e.count });
    }
    return [...out.values()];
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.flush();
      this.failures = 0;
      if (!this.stopped) this.schedule(this.config.LEDGER_FLUSH_MS);
    } catch (e) {
      this.failures++;
      if (this.failures === 1 || this.failures % 10 === 0)
        this.logger.warn(
          `refusal counts not written (${(e as Error).message}); kept, attempt ${this.failures}`,
        );
      if (!this.stopped)
        this.schedule(Math.min(this.config.LEDGER_FLUSH_MS * 2 ** this.failures, MAX_BACKOFF_MS));
    }
  }
}
