import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppConfig } from '@app/config';
import { ReadinessRegistry } from '@app/observability';
import { QuotaMetrics } from '../quota-metrics';
import type { LedgerRecord } from './ledger-record';
import { LedgerRepository } from './ledger.repository';

const MAX_BACKOFF_MS = 5000;
const SHUTDOWN_FLUSH_MAX_MS = 10000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SQLSTATE classes 22 (data exception) and 23 (integrity): retrying the same row cannot help. */
function isDataError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}

/**
 * The usage ledger: settled requests are queued in memory and written to usage_records
 * in batches (every LEDGER_FLUSH_MS, or as soon as LEDGER_BATCH_SIZE are waiting).
 *
 * - PostgreSQL down: the batch stays at the head of the queue and is retried with
 *   exponential backoff (up to 5 s); rows carry their own id, so a retry never doubles one.
 * - Queue full (LEDGER_MAX_QUEUE): QuotaService refuses new requests (503), so only
 *   requests already in flight can arrive; those are dropped with an error log and counted.
 * - A row PostgreSQL rejects as bad data is isolated from its batch, logged and counted.
 * - Shutdown (beforeApplicationShutdown, before the DataSource closes): flush, retrying
 *   for up to min(SHUTDOWN_GRACE_MS, 10 s); what is still unwritten goes to
 *   DATA_DIR/ledger-spool/*.jsonl and is queued again on the next start.
 */
@Injectable()
export class LedgerService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('Ledger');
  private queue: LedgerRecord[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** The shutdown flush is over: a late record goes straight to the spool. */
  private closed = false;
  private consecutiveFailures = 0;
  private failures = 0;
  private dropped = 0;
  private rejected = 0;
  private written = 0;
  private lastDropLog = 0;
  private droppedSinceLog = 0;
  private spoolFiles: string[] = [];

  constructor(
    private readonly repo: LedgerRepository,
    private readonly config: AppConfig,
    private readonly readiness: ReadinessRegistry,
    private readonly metrics: QuotaMetrics,
  ) {}

  /** Records waiting to be written. */
  get depth(): number {
    return this.queue.length;
  }
  /** Batch writes that failed (each is retried). */
  get flushFailures(): number {
    return this.failures;
  }
  /** Records dropped because the queue was full. */
  get droppedRecords(): number {
    return this.dropped;
  }
  /** Records PostgreSQL refused as bad data. */
  get rejectedRecords(): number {
    return this.rejected;
  }
  get writtenRecords(): number {
    return this.written;
  }
  get isFull(): boolean {
    return this.queue.length >= this.config.LEDGER_MAX_QUEUE;
  }

  onModuleInit(): void {
    this.readiness.register({
      name: 'ledger',
      check: () => {
        const backlog = this.queue.length;
        if (backlog > this.config.READY_MAX_LEDGER_BACKLOG) {
          return Promise.reject(
            new Error(
              `ledger backlog ${backlog} above READY_MAX_LEDGER_BACKLOG=${this.config.READY_MAX_LEDGER_BACKLOG}`,
            ),
          );
        }
        return Promise.resolve({ backlog, flushFailures: this.failures });
      },
    });
    this.metrics.trackLedgerDepth(() => this.queue.length);
    this.loadSpool();
    this.schedule(this.config.LEDGER_FLUSH_MS);
  }

  /** Queues one record; false (and a loud log) when the queue is full. */
  enqueue(record: LedgerRecord): boolean {
    if (this.closed) return this.spoolLate(record);
    if (this.isFull) {
      this.dropped++;
      this.droppedSinceLog++;
      this.metrics.ledgerDrop('queue_full');
      const now = Date.now();
      if (now - this.lastDropLog >= 1000) {
        this.logger.error(
          `LEDGER QUEUE FULL (${this.queue.length} >= LEDGER_MAX_QUEUE=${this.config.LEDGER_MAX_QUEUE}): ` +
            `${this.droppedSinceLog} usage record(s) DROPPED (e.g. request ${record.requestId ?? '-'}, ` +
            `tenant ${record.tenantId}, key ${record.apiKeyId}, ${record.promptTokens + record.completionTokens} tokens). ` +
            `Is PostgreSQL reachable?`,
        );
        this.lastDropLog = now;
        this.droppedSinceLog = 0;
      }
      return false;
    }
    this.queue.push(record);
    if (
      this.queue.length >= this.config.LEDGER_BATCH_SIZE &&
      this.consecutiveFailures === 0 &&
      !this.stopped
    ) {
      this.schedule(0);
    }
    return true;
  }

  /**
   * Writes everything queued so far; rejects on the first failed batch (the queue keeps
   * it). Calls are serialised, so a batch is never written by two flushes at once.
   */
  flush(): Promise<number> {
    const run = this.chain.then(() => this.drain());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async drain(): Promise<number> {
    let n = 0;
    while (this.queue.length) {
      const batch = this.queue.slice(0, this.config.LEDGER_BATCH_SIZE);
      try {
        n += await this.repo.insertBatch(batch);
      } catch (e) {
        if (!isDataError(e)) {
          this.failures++;
          this.metrics.ledgerFlushFailure();
          throw e;
        }
        n += await this.isolate(batch);
      }
      // Only drain removes from the head; enqueue appends: the head is still this batch.
      this.queue.splice(0, batch.length);
      this.written += batch.length;
    }
    if (this.spoolFiles.length) this.removeSpool();
    return n;
  }

  /** Writes a batch row by row; drops (loudly) only the rows PostgreSQL calls bad data. */
  private async isolate(batch: LedgerRecord[]): Promise<number> {
    let n = 0;
    for (const r of batch) {
      try {
        n += await this.repo.insertBatch([r]);
      } catch (e) {
        if (!isDataError(e)) {
          this.failures++;
          this.metrics.ledgerFlushFailure();
          throw e;
        }
        this.rejected++;
        this.metrics.ledgerDrop('rejected');
        this.logger.error(
          `usage record REJECTED by PostgreSQL and dropped (${(e as Error).message}): ${JSON.stringify(r)}`,
        );
      }
    }
    return n;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    try {
      await this.flush();
      if (this.consecutiveFailures) {
        this.logger.log(`ledger writes work again after ${this.consecutiveFailures} failed attempt(s)`);
      }
      this.consecutiveFailures = 0;
      this.schedule(this.config.LEDGER_FLUSH_MS);
    } catch (e) {
      this.consecutiveFailures++;
      const delay = Math.min(
        this.config.LEDGER_FLUSH_MS * 2 ** (this.consecutiveFailures - 1),
        MAX_BACKOFF_MS,
      );
      if (this.consecutiveFailures === 1 || this.consecutiveFailures % 10 === 0) {
        this.logger.warn(
          `ledger write failed (${(e as Error).message}); ${this.queue.length} record(s) kept, ` +
            `attempt ${this.consecutiveFailures}, next in ${delay} ms`,
        );
      }
      this.schedule(delay);
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const deadline = Date.now() + Math.min(this.config.SHUTDOWN_GRACE_MS, SHUTDOWN_FLUSH_MAX_MS);
    let delay = 100;
    for (;;) {
      try {
        await this.flush();
        break;
      } catch (e) {
        if (Date.now() + delay > deadline) {
          this.spool((e as Error).message);
          break;
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
    this.closed = true;
  }

  /** A request settled after the shutdown flush (the pool is about to close): keep its row on disk. */
  private spoolLate(record: LedgerRecord): boolean {
    const file = join(this.spoolDir, `ledger-late-${process.pid}.jsonl`);
    try {
      mkdirSync(this.spoolDir, { recursive: true });
      appendFileSync(file, JSON.stringify(record) + '\n', { mode: 0o600 });
      this.logger.warn(
        `usage record of request ${record.requestId ?? '-'} settled after shutdown: saved to ${file}`,
      );
      return true;
    } catch (e) {
      this.dropped++;
      this.metrics.ledgerDrop('queue_full');
      this.logger.error(
        `usage record LOST after shutdown (spool failed: ${(e as Error).message}): ${JSON.stringify(record)}`,
      );
      return false;
    }
  }

  private get spoolDir(): string {
    return join(this.config.DATA_DIR, 'ledger-spool');
  }

  private spool(reason: string): void {
    if (!this.queue.length) return;
    const file = join(
      this.spoolDir,
      `ledger-${Date.now()}-${process.pid}-${randomBytes(3).toString('hex')}.jsonl`,
    );
    try {
      mkdirSync(this.spoolDir, { recursive: true });
      writeFileSync(file, this.queue.map((r) => JSON.stringify(r)).join('\n') + '\n', { mode: 0o600 });
      this.logger.error(
        `shutdown: PostgreSQL unreachable (${reason}); ${this.queue.length} usage record(s) saved to ${file}, written on next start`,
      );
    } catch (e) {
      this.logger.error(
        `shutdown: ${this.queue.length} usage record(s) LOST: PostgreSQL unreachable (${reason}) and spool failed (${(e as Error).message})`,
      );
    }
  }

  private loadSpool(): void {
    let files: string[];
    try {
      files = readdirSync(this.spoolDir).filter((f) => f.endsWith('.jsonl'));
    } catch {
      return;
    }
    for (const f of files) {
      const path = join(this.spoolDir, f);
      const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
      for (const line of lines) {
        const r = JSON.parse(line) as LedgerRecord & { createdAt: string };
        this.queue.push({ ...r, createdAt: new Date(r.createdAt) });
      }
      this.spoolFiles.push(path);
      this.logger.warn(`queued ${lines.length} usage record(s) spooled at a previous shutdown (${path})`);
    }
  }

  private removeSpool(): void {
    for (const f of this.spoolFiles) rmSync(f, { force: true });
    this.spoolFiles = [];
  }
}
