import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AppConfig } from '@app/config';
import { RedisClient, RedisConnection, sendPipelined } from '@app/database';
import { LEDGER_STREAMS_KEY, ledgerStreamKey } from '../keys';
import { LedgerRecord, parseRecord } from './ledger-record';
import { LedgerRepository } from './ledger.repository';

export const LEDGER_GROUP = 'ledger';
/** Streams drained at once by one pass. */
const PARALLEL = 8;

type Entry = [id: string, fields: string[] | null];

/**
 * Moves usage rows from the tenants' ledger streams (`ledger:{T}`, appended by the settle
 * and release scripts atomically with the counters) to PostgreSQL. Every instance is a
 * consumer of the group `ledger` on every stream: XREADGROUP, insert (ON CONFLICT on the
 * row id: a row delivered twice is inserted once), then XACK + XDEL, only after the commit.
 * Entries a consumer read but never acknowledged (it died, or PostgreSQL failed) are
 * claimed with XAUTOCLAIM once idle for LEDGER_CLAIM_IDLE_MS, by any instance.
 *
 * Discovery: the global set `ledger-streams` lists the tenants whose stream may hold rows
 * (SADD before a tenant's first settle in this process, and again each pass for the tenants
 * settled since: a set lost with Redis is refilled). Only single-key commands touch it.
 */
@Injectable()
export class LedgerStreamService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('LedgerStream');
  readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly announced = new Set<string>();
  private readonly recent = new Set<string>();
  /** Tenants whose entries this consumer read but could not write: read them again first. */
  private readonly ownPending = new Set<string>();
  /** Streams whose group this instance created or found. */
  private readonly groups = new Set<string>();
  private timer?: NodeJS.Timeout;
  private pass: Promise<void> | null = null;
  private stopped = false;
  private lastClaim = 0;
  private failing = 0;
  private moved = 0;
  /** The last pass read every stream without an error, and found none lost (NOGROUP). */
  private clean = false;
  /** A stream was found without its group during this pass (Redis lost it). */
  private lostSeen = false;
  /** The ledger queue drives the passes (passNow on its tick): this timer is only a fallback then. */
  private driven = false;
  private committed?: (rows: LedgerRecord[]) => void;

  constructor(
    private readonly repo: LedgerRepository,
    private readonly config: AppConfig,
    @Optional() private readonly redisConnection?: RedisConnection,
  ) {}

  private get redis(): RedisClient | null {
    return this.redisConnection?.client ?? null;
  }

  /** Rows moved to PostgreSQL by this instance since start. */
  get movedRows(): number {
    return this.moved;
  }

  onModuleInit(): void {
    if (!this.redis) return;
    this.schedule(this.config.LEDGER_FLUSH_MS);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.redis) return;
    // What this instance read is acknowledged after its commit; anything left is claimed by
    // another instance (or by this one after a restart) once idle.
    const budget = Math.min(this.config.SHUTDOWN_GRACE_MS, 5000);
    await Promise.race([
      (this.pass ?? Promise.resolve()).then(() => this.runPass()),
      new Promise((r) => setTimeout(r, budget).unref()), // (must not hold a closed app's process)
    ]);
  }

  /**
   * Before a tenant's settle: make sure its stream is discoverable. Never throws; nothing to
   * wait for (undefined) once the tenant was announced by this process.
   */
  announce(tenantId: string): Promise<void> | undefined {
    const redis = this.redis;
    if (!redis) return undefined;
    this.recent.add(tenantId);
    if (this.announced.has(tenantId)) return undefined;
    return sendPipelined(redis, 'sadd', [LEDGER_STREAMS_KEY, tenantId]).then(
      () => void this.announced.add(tenantId),
      () => undefined, // the pass adds it again (recent)
    );
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.startPass(), ms);
    this.timer.unref();
  }

  private startPass(): void {
    this.timer = undefined;
    this.pass = this.runPass().finally(() => {
      this.pass = null;
      this.schedule(this.config.LEDGER_FLUSH_MS * (this.driven ? 2 : 1));
    });
  }

  /**
   * The ledger queue's tick: a pass now (or the one running), so the queue then skips the
   * rows it committed (see onCommitted); waits at most `maxWaitMs` (a Redis that does not
   * answer must not hold the queue's own writes).
   */
  async passNow(maxWaitMs: number): Promise<boolean> {
    if (!this.redis || this.stopped) return false;
    this.driven = true;
    if (!this.pass) {
      if (this.timer) clearTimeout(this.timer);
      this.startPass();
    }
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      this.pass!.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), maxWaitMs))),
    ]);
    clearTimeout(timer);
    // true: every row settled before this call is now in PostgreSQL, by this pass or by the
    // queue's drain (the queue writes what the pass did not commit)
    return finished && this.clean;
  }

  /** Called with the rows of every batch a pass committed (inserted, or already there). */
  onCommitted(fn: (rows: LedgerRecord[]) => void): void {
    this.committed = fn;
  }

  /** One pass over every stream; errors are logged (rows stay in Redis). */
  private async runPass(): Promise<void> {
    const redis = this.redis;
    if (!redis) return;
    this.clean = false;
    this.lostSeen = false;
    try {
      if (this.recent.size) {
        const ids = [...this.recent];
        this.recent.clear();
        await sendPipelined(redis, 'sadd', [LEDGER_STREAMS_KEY, ...ids]);
      }
      const tenants = (await sendPipelined(redis, 'smembers', [LEDGER_STREAMS_KEY])) as string[];
      const claim = Date.now() - this.lastClaim >= this.config.LEDGER_CLAIM_IDLE_MS / 2;
      if (claim) this.lastClaim = Date.now();
      for (let i = 0; i < tenants.length; i += PARALLEL)
        await Promise.all(
          tenants
            .slice(i, i + PARALLEL)
            .map((t) => this.drain(t, claim ? this.config.LEDGER_CLAIM_IDLE_MS : null)),
        );
      if (this.failing)
        this.logger.log(`ledger stream rows are written again (after ${this.failing} failed passes)`);
      this.failing = 0;
      this.clean = !this.lostSeen;
    } catch (e) {
      this.failing++;
      if (this.failing === 1 || this.failing % 30 === 0)
        this.logger.warn(
          `ledger stream pass failed (${(e as Error).message}); the rows stay in Redis, attempt ${this.failing}`,
        );
    }
  }

  /**
   * Writes every stream's rows now (after this instance's running pass): what this instance
   * and any other settled so far, except rows another instance is writing at this moment.
   */
  async drainAll(): Promise<number> {
    const redis = this.redis;
    if (!redis) return 0;
    await this.pass?.catch(() => undefined);
    const tenants = new Set([
      ...this.recent,
      ...((await sendPipelined(redis, 'smembers', [LEDGER_STREAMS_KEY])) as string[]),
    ]);
    let n = 0;
    for (const t of tenants) n += await this.drain(t, null);
    return n;
  }

  /**
   * Writes everything in one tenant's stream now, including rows other consumers read and
   * did not acknowledge yet (claimed at once: inserting a row twice inserts it once). Used by
   * a rebuild, so the ledger it sums holds what the counters count.
   */
  async drainTenant(tenantId: string): Promise<number> {
    if (!this.redis) return 0;
    return this.drain(tenantId, 0);
  }

  /** Moves the tenant's stream to PostgreSQL; `claimIdle` (ms) also claims others' idle entries. */
  private async drain(tenantId: string, claimIdle: number | null): Promise<number> {
    try {
      return await this.drainOnce(tenantId, claimIdle);
    } catch (e) {
      if (!String((e as Error).message).includes('NOGROUP')) throw e;
      // Redis lost the stream and its group (restart, flush): create it again
      this.lostSeen = true;
      this.groups.delete(ledgerStreamKey(tenantId));
      return this.drainOnce(tenantId, claimIdle);
    }
  }

  private async drainOnce(tenantId: string, claimIdle: number | null): Promise<number> {
    const redis = this.redis!;
    const key = ledgerStreamKey(tenantId);
    const count = this.config.LEDGER_BATCH_SIZE;
    let n = 0;
    const write = async (entries: Entry[]) => {
      if (!entries.length) return 0;
      const rows: LedgerRecord[] = [];
      for (const [id, fields] of entries) {
        if (!fields) continue; // deleted meanwhile
        const raw = fields[fields.indexOf('r') + 1];
        try {
          rows.push(parseRecord(raw));
        } catch {
          this.logger.error(`ledger stream ${key}: entry ${id} is not a usage record, dropped: ${raw}`);
        }
      }
      try {
        if (rows.length) await this.repo.insertBatch(rows);
      } catch (e) {
        this.ownPending.add(tenantId);
        throw e;
      }
      if (rows.length) this.committed?.(rows);
      const ids = entries.map(([id]) => id);
      await sendPipelined(redis, 'xack', [key, LEDGER_GROUP, ...ids]);
      await sendPipelined(redis, 'xdel', [key, ...ids]);
      this.moved += rows.length;
      return rows.length;
    };
    await this.ensureGroup(key);
    if (this.ownPending.has(tenantId)) {
      for (;;) {
        const mine = await this.read(key, '0', count);
        n += await write(mine);
        if (mine.length < count) break;
      }
      this.ownPending.delete(tenantId);
    }
    if (claimIdle !== null) {
      let cursor = '0-0';
      do {
        const r = (await sendPipelined(redis, 'xautoclaim', [
          key,
          LEDGER_GROUP,
          this.consumer,
          claimIdle,
          cursor,
          'COUNT',
          count,
        ])) as [string, Entry[]];
        cursor = r[0];
        n += await write(r[1]);
      } while (cursor !== '0-0');
    }
    for (;;) {
      const fresh = await this.read(key, '>', count);
      n += await write(fresh);
      if (fresh.length < count) break;
    }
    return n;
  }

  private async read(key: string, from: string, count: number): Promise<Entry[]> {
    const r = (await sendPipelined(this.redis!, 'xreadgroup', [
      'GROUP',
      LEDGER_GROUP,
      this.consumer,
      'COUNT',
      count,
      'STREAMS',
      key,
      from,
    ])) as [string, Entry[]][] | null;
    return r?.[0]?.[1] ?? [];
  }

  /** The group reads from the start of the stream (id 0): rows added before it existed are delivered too. */
  private async ensureGroup(key: string): Promise<void> {
    if (this.groups.has(key)) return;
    try {
      await sendPipelined(this.redis!, 'xgroup', ['CREATE', key, LEDGER_GROUP, '0', 'MKSTREAM']);
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
    this.groups.add(key);
  }
}
