import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import {
  close,
  closeSync,
  fdatasync,
  fdatasyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlink,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { AppConfig } from '@app/config';
import { ReadinessRegistry, TickBatch } from '@app/observability';
import { QuotaMetrics } from '../quota-metrics';
import { LedgerRecord, parseRecord, serializeRecord } from './ledger-record';
import { LedgerStreamService } from './ledger-stream.service';
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
 * (With Redis, rows also travel in the tenant's ledger stream, see LedgerStreamService: each
 * tick runs the stream's pass first and skips the rows it committed, so a row is normally
 * inserted once; this queue writes what the stream did not move, e.g. rows Redis lost.)
 *
 * - Journal: every queued row is first appended (write(2), before the settle returns and
 *   so before the client's answer completes; the rows of one event-loop turn in one write)
 *   to DATA_DIR/ledger-spool/journal-*.jsonl.
 *   A SIGKILL loses nothing: the next start replays the journal. fdatasync runs on every
 *   flush tick (LEDGER_FLUSH_MS, on the thread pool), so a power loss can lose that much.
 *   After each drain the journal starts over in a new file holding only what is still
 *   queued (startJournalOver). One instance per DATA_DIR.
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
  private journalFd: number | null = null;
  private journalPath = '';
  private journalDirty = false;
  /** Rows appended since the last truncation (nothing to truncate otherwise). */
  private journalUsed = false;
  /**
   * A tick is running, or one is due at once: a full queue does not start another. (Each
   * enqueue past LEDGER_BATCH_SIZE used to start one while the running tick waited for the
   * stream's pass: 134-163 ticks per 15 s for 24-26 passes on one connection at ~700 req/s,
   * each with a journal sync and a drain, all waiting for the same pass.)
   */
  private ticking = false;
  /** Ids of rows the stream passes committed since the last drain: their local copy needs no insert. */
  private readonly moved = new Set<string>();
  /** The fdatasync on the thread pool, while one runs. */
  private syncing: Promise<void> | null = null;
  /** Journal lines waiting for this turn's write (one write per turn), and their requests' ids. */
  private readonly unwritten = new TickBatch((text) => this.appendJournal(text));
  private unwrittenIds: (string | null)[] = [];

  constructor(
    private readonly repo: LedgerRepository,
    private readonly config: AppConfig,
    private readonly readiness: ReadinessRegistry,
    private readonly metrics: QuotaMetrics,
    @Optional() private readonly stream?: LedgerStreamService,
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
    this.stream?.onCommitted((rows) => {
      if (this.queue.length) for (const r of rows) this.moved.add(r.id);
    });
    this.loadSpool();
    this.openJournal();
    this.schedule(this.config.LEDGER_FLUSH_MS);
  }

  /** Journals and queues one record (`line`: serializeRecord(record)); false (and a loud log) when the queue is full. */
  enqueue(record: LedgerRecord, line = serializeRecord(record)): boolean {
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
    this.journal(record, line);
    this.queue.push(record);
    if (
      this.queue.length >= this.config.LEDGER_BATCH_SIZE &&
      !this.ticking &&
      this.consecutiveFailures === 0 &&
      !this.stopped
    ) {
      this.ticking = true;
      this.schedule(0);
    }
    return true;
  }

  /**
   * Writes everything queued so far, and (with Redis) the rows in the ledger streams;
   * rejects on the first failed batch (the queue keeps it). Calls are serialised, so a batch
   * is never written by two flushes at once.
   */
  async flush(): Promise<number> {
    const n = await this.flushQueue();
    return n + ((await this.stream?.drainAll()) ?? 0);
  }

  /**
   * Writes the local queue only (rows whose settle did not reach Redis, or every row without
   * Redis): everything, or only its first `upTo` rows (see tickOnce).
   */
  flushQueue(upTo = Infinity): Promise<number> {
    const run = this.chain.then(() => this.drain(upTo));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async drain(upTo: number): Promise<number> {
    let n = 0;
    // How many rows from the head to write (all: also those queued while it writes).
    const all = upTo === Infinity;
    let cut = all ? Infinity : Math.min(upTo, this.queue.length);
    if (this.moved.size) {
      // Already in PostgreSQL by the stream: what is left of the queue is what it has not moved.
      const kept: LedgerRecord[] = [];
      let before = 0;
      for (let i = 0; i < this.queue.length; i++) {
        if (this.moved.has(this.queue[i].id)) continue;
        kept.push(this.queue[i]);
        if (i < cut) before++;
      }
      this.queue = kept;
      if (!all) cut = before;
      this.moved.clear();
    }
    while (this.queue.length && cut > 0) {
      const batch = this.queue.slice(0, Math.min(cut, this.config.LEDGER_BATCH_SIZE));
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
      cut -= batch.length;
    }
    // Synchronously after the loop: every journaled row but the queue's is in PostgreSQL.
    this.startJournalOver();
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
    this.ticking = true;
    try {
      await this.tickOnce();
    } finally {
      this.ticking = false;
    }
  }

  private async tickOnce(): Promise<void> {
    this.syncJournal();
    // The stream's pass first: the rows it commits are then skipped here (one insert per row
    // instead of two; a row the stream does not move, e.g. Redis lost it, is written here).
    // Rows queued while the pass ran wait for the next tick when the pass was clean: the next
    // pass moves them (the drain used to insert them, and that pass to insert them again, which
    // PostgreSQL skipped: an extra statement per tick). A pass that failed, ran out of time or
    // found a stream lost writes everything, as before: a rebuild after a Redis loss counts on
    // every queue written within LEDGER_FLUSH_MS (QuotaService). (A row added to the stream just
    // before a Redis flush this pass did not notice, another instance having created the group
    // again, and queued after the cut waits one tick more: never lost, at worst counted a tick
    // late by a rebuild, inside the rebuild's 1 s margin.)
    // (It never rejects, runPass logs its errors; the catch keeps this tick's chain alive regardless.)
    const cut = this.queue.length;
    const pass = this.stream?.passNow(this.config.LEDGER_FLUSH_MS / 2) ?? Promise.resolve(false);
    const clean = await pass.catch(() => false);
    try {
      await this.flushQueue(clean && !this.stopped ? cut : Infinity);
      if (this.consecutiveFailures) {
        this.logger.log(`ledger writes work again after ${this.consecutiveFailures} failed attempt(s)`);
      }
      this.consecutiveFailures = 0;
      // (a queue that filled up meanwhile goes at once, as it would have from enqueue)
      this.schedule(this.queue.length >= this.config.LEDGER_BATCH_SIZE ? 0 : this.config.LEDGER_FLUSH_MS);
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
      // A write that never answers (PostgreSQL black-holed) must not hold the shutdown past the
      // deadline: the query timeouts bound it, and so does this race.
      const left = Math.max(0, deadline - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const error = await Promise.race([
        this.flushQueue().then(() => null),
        new Promise<Error>(
          (r) => (timer = setTimeout(() => r(new Error(`no answer within ${left} ms`)), left)),
        ),
      ])
        .catch((e: Error) => e)
        // (the losing timer would hold a closed app's process up to 10 s: Jest's "did not exit")
        .finally(() => clearTimeout(timer));
      if (!error) break;
      if (Date.now() + delay > deadline) {
        this.keepJournal(error.message);
        break;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
    }
    this.closed = true;
    await this.closeJournal();
  }

  /** A request settled after the shutdown flush (the pool is about to close): keep its row on disk. */
  private spoolLate(record: LedgerRecord): boolean {
    const file = join(this.spoolDir, `ledger-late-${process.pid}.jsonl`);
    try {
      mkdirSync(this.spoolDir, { recursive: true });
      const fd = openSync(file, 'a', 0o600);
      try {
        writeSync(fd, serializeRecord(record) + '\n');
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
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

  private newJournalPath(): string {
    return join(
      this.spoolDir,
      `journal-${Date.now()}-${process.pid}-${randomBytes(3).toString('hex')}.jsonl`,
    );
  }

  private openJournal(): void {
    this.journalPath = this.newJournalPath();
    try {
      mkdirSync(this.spoolDir, { recursive: true });
      this.journalFd = openSync(this.journalPath, 'a', 0o600);
    } catch (e) {
      this.logger.error(
        `cannot open the ledger journal ${this.journalPath} (${(e as Error).message}): usage rows are held in memory only until written`,
      );
    }
  }

  /**
   * Appends the row's line to the journal: the lines of one turn of the event loop leave in
   * one write(2) at its end (process.nextTick from the settles' continuations runs once they
   * have all run), and `journalWritten` resolves after it; the settle awaits that before it
   * returns, so the row is still written before the client's answer completes.
   */
  private journal(record: LedgerRecord, line: string): void {
    if (this.journalFd === null) return;
    this.unwrittenIds.push(record.requestId);
    this.unwritten.add(line + '\n');
  }

  /**
   * Resolves once every row journaled so far has been written (write(2)); undefined when none
   * waits. A failed write is logged (those rows are held in memory only, as before).
   */
  get journalWritten(): Promise<void> | undefined {
    return this.unwritten.written;
  }

  /** The journal's write of one turn's lines (their ids for the error, should it fail). */
  private appendJournal(text: string): void {
    const ids = this.unwrittenIds;
    this.unwrittenIds = [];
    if (this.journalFd === null) return;
    try {
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length;) at += writeSync(this.journalFd, bytes, at);
      this.journalDirty = true;
      this.journalUsed = true;
    } catch (e) {
      this.logger.error(
        `ledger journal write failed (${(e as Error).message}): ${ids.length} row(s) held in memory only (requests ${ids.map((id) => id ?? '-').join(', ')})`,
      );
    }
  }

  /**
   * fdatasync on libuv's thread pool, not the event loop: a disk flush takes 1-8 ms here,
   * and every request that arrived meanwhile waited for it (issue 18, p99 at 200 req/s).
   * One at a time; a failed sync is tried again on the next tick (the rows are in the page
   * cache meanwhile: a process crash loses nothing).
   */
  private syncJournal(): void {
    this.unwritten.flush();
    const fd = this.journalFd;
    if (fd === null || !this.journalDirty || this.syncing) return;
    this.journalDirty = false;
    this.syncing = new Promise((resolve) =>
      fdatasync(fd, (err) => {
        if (err) this.journalDirty = true;
        this.syncing = null;
        resolve();
      }),
    );
  }

  /**
   * After a drain: every journaled row but the queue's is in PostgreSQL, so the journal starts
   * over in a new file holding the queue's rows (none when the queue is empty; some when rows
   * settled after the tick's cut wait for the next pass). A new file rather than ftruncate,
   * which frees the old blocks on the event loop (up to 2.6 ms measured here, every tick); the
   * old file is closed and removed on the thread pool once its sync, and the new file's when
   * rows were copied, are done. Should that fail, it is replayed on the next start (inserted
   * once, by id).
   */
  private startJournalOver(): void {
    if (this.journalFd === null) return;
    this.unwritten.flush(); // (lines of this turn: in the file they belong to, and copied below)
    const carried = this.queue.length;
    if (!carried && !this.journalUsed) return;
    const oldFd = this.journalFd;
    const oldPath = this.journalPath;
    const path = this.newJournalPath();
    let fd: number | null = null;
    try {
      fd = openSync(path, 'a', 0o600);
      if (carried) {
        const bytes = Buffer.from(this.queue.map(serializeRecord).join('\n') + '\n');
        for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at);
      }
    } catch {
      if (fd !== null) {
        closeSync(fd);
        rmSync(path, { force: true });
      }
      if (carried) return; // kept: the old file still holds the queue's rows
      try {
        ftruncateSync(oldFd, 0);
      } catch {
        return; // kept: the rows are written once again on the next start (inserted once, by id)
      }
      this.journalDirty = false;
      this.journalUsed = false;
      return;
    }
    this.journalFd = fd;
    this.journalPath = path;
    this.journalDirty = false;
    this.journalUsed = carried > 0;
    const copied = carried ? new Promise<void>((resolve) => fdatasync(fd, () => resolve())) : undefined;
    void Promise.all([this.syncing, copied]).then(() => close(oldFd, () => unlink(oldPath, () => undefined)));
  }

  private async closeJournal(): Promise<void> {
    this.unwritten.flush();
    if (this.journalFd === null) return;
    await this.syncing; // (its fd must stay open until it returns)
    if (this.journalDirty) {
      try {
        fdatasyncSync(this.journalFd);
      } catch {
        // as in syncJournal
      }
    }
    closeSync(this.journalFd);
    this.journalFd = null;
    if (!this.queue.length) rmSync(this.journalPath, { force: true });
  }

  /** Shutdown could not write the queue: it stays in the journal, replayed on the next start. */
  private keepJournal(reason: string): void {
    this.unwritten.flush();
    if (!this.queue.length) return;
    if (this.journalFd !== null) {
      this.logger.error(
        `shutdown: PostgreSQL unreachable (${reason}); ${this.queue.length} usage record(s) kept in ${this.journalPath}, written on next start`,
      );
      return;
    }
    const file = join(
      this.spoolDir,
      `ledger-${Date.now()}-${process.pid}-${randomBytes(3).toString('hex')}.jsonl`,
    );
    try {
      mkdirSync(this.spoolDir, { recursive: true });
      const fd = openSync(file, 'w', 0o600);
      writeSync(fd, this.queue.map(serializeRecord).join('\n') + '\n');
      fdatasyncSync(fd);
      closeSync(fd);
      this.logger.error(
        `shutdown: PostgreSQL unreachable (${reason}); ${this.queue.length} usage record(s) saved to ${file}, written on next start`,
      );
    } catch (e) {
      this.logger.error(
        `shutdown: ${this.queue.length} usage record(s) LOST: PostgreSQL unreachable (${reason}) and spool failed (${(e as Error).message})`,
      );
    }
  }

  /**
   * Queues the rows of earlier runs (journals, spools). A line that is not a whole record
   * (the process died in the middle of an append) is skipped with a warning: nothing here
   * stops the gateway from starting.
   */
  private loadSpool(): void {
    let files: string[];
    try {
      files = readdirSync(this.spoolDir).filter((f) => f.endsWith('.jsonl'));
    } catch {
      return;
    }
    for (const f of files) {
      const path = join(this.spoolDir, f);
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (e) {
        this.logger.error(`cannot read the ledger spool ${path} (${(e as Error).message}): left in place`);
        continue;
      }
      const lines = text.split('\n');
      let n = 0;
      lines.forEach((line, i) => {
        if (!line.trim()) return;
        try {
          this.queue.push(parseRecord(line));
          n++;
        } catch {
          const where = i >= lines.length - 2 ? 'torn last line' : `line ${i + 1}`;
          this.logger.warn(
            `ledger spool ${path}: ${where} is not a whole usage record (${line.length} bytes, the process died while writing it?): skipped`,
          );
        }
      });
      this.spoolFiles.push(path);
      if (n) this.logger.warn(`queued ${n} usage record(s) kept by a previous run (${path})`);
    }
  }

  private removeSpool(): void {
    for (const f of this.spoolFiles) rmSync(f, { force: true });
    this.spoolFiles = [];
  }
}
