import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { DomainEvents } from '@app/tenancy';
import { QuotaClock } from './clock';
import { levelRef } from './keys';
import { LedgerStreamService } from './ledger/ledger-stream.service';
import { LedgerService } from './ledger/ledger.service';
import { periodWindow } from './periods';
import type { QuotaLevel, QuotaPeriod } from './quota.types';
import { QuotaStore, RebuildEntry, RebuildOptions } from './store/quota-store';
import { Sums, UsageRepository } from './usage/usage.repository';

/** Lets other work (requests, health probes) run between slices of a rebuild. */
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

export interface CounterChange {
  level: QuotaLevel;
  /** Tenant, user or key id. */
  id: string;
  /** Redis key of the token counter (the spend counter is the same with `spend:`). */
  key: string;
  tokens: { before: number; after: number };
  spendMicros: { before: number; after: number };
}

export interface RebuildReport {
  tenantId: string;
  /** Before/after of every counter written (full rebuilds; empty for sparse ones). */
  counters: CounterChange[];
  /** Counters written (tenant, users and keys). */
  written: number;
}

/** How often a running instance checks that the counters were not lost (Redis restarted / flushed). */
const CHECK_EVERY_MS = 30_000;
/**
 * Owners per PostgreSQL fetch and per store script. What two chunks in flight hold survives
 * young collections: at 500 the scavenges during a 100,000-key rebuild paused the loop for
 * 25-56 ms, at 200 for 15-30 ms (worst probe 160-400 -> 90-175 ms on the busy 2-core box).
 */
const CHUNK = 200;
const ZERO: Sums = { tokens: 0, costMicros: 0 };

interface Owner {
  level: QuotaLevel;
  id: string;
  userId: string | null;
  period: QuotaPeriod;
}

/**
 * Rebuilds the store's counters from the ledger (usage_records) for the current reset
 * period of every level: on start when the store is empty (no marker key), every 30 s
 * if the marker vanished (Redis restarted or flushed), for tenants whose counters missed
 * a write while Redis was down, and from the CLI.
 *
 * A counter becomes: ledger sum of its period + what open reservations hold on it. Exact
 * when no request is settled during the rebuild itself (a settle racing it can be
 * counted once too few or too many until the next rebuild); the own ledger queue is
 * flushed first, other instances flush within LEDGER_FLUSH_MS.
 */
@Injectable()
export class ReconciliationService implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Reconciliation');
  /** Tenants whose counters missed a write, with the time of the first miss. */
  private readonly dirty = new Map<string, number>();
  /** Rebuilds in progress per tenant (one at a time per tenant; tenants in parallel). */
  private readonly locks = new Map<string, Promise<unknown>>();
  private running: Promise<unknown> | null = null;
  private interval?: NodeJS.Timeout;

  constructor(
    private readonly store: QuotaStore,
    private readonly ledger: LedgerService,
    private readonly repo: UsageRepository,
    private readonly clock: QuotaClock,
    private readonly config: AppConfig,
    private readonly events: DomainEvents,
    private readonly stream: LedgerStreamService,
  ) {}

  /**
   * A reset period changed (tenant, user or key): the counters move to a new bucket, which
   * must start from the ledger, not from 0. Runs in the background, the tenant's admissions
   * held meanwhile (its marker is dropped first). A failed rebuild leaves the tenant unmarked
   * (admissions wait for a rebuild, as after a store loss) and is retried by the periodic pass.
   * Other limit changes need no rebuild: limits are read at each admission.
   */
  onModuleInit(): void {
    const later = async (tenantId: string) => {
      try {
        await this.store.unmarkTenant(tenantId);
        await this.rebuild(tenantId);
      } catch (e) {
        this.logger.warn(
          `tenant ${tenantId}: counters not rebuilt after a change (${(e as Error).message}); retried by the periodic pass`,
        );
      }
    };
    this.events.on('quota.period-changed', ({ tenantId }) => void later(tenantId));
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.store.waitReady(5000);
    await this.ensureInitialized('start');
    this.interval = setInterval(() => void this.periodic(), CHECK_EVERY_MS);
    this.interval.unref();
  }

  onModuleDestroy(): void {
    if (this.interval) clearInterval(this.interval);
  }

  /** A write to the counters of this tenant failed: rebuild them once the store answers. */
  markDirty(tenantId: string): void {
    if (!this.dirty.has(tenantId)) this.dirty.set(tenantId, this.clock.now());
  }

  get dirtyTenants(): string[] {
    return [...this.dirty.keys()];
  }

  /** Rebuilds everything when the store has no marker; true when it did. */
  async ensureInitialized(reason = 'check'): Promise<boolean> {
    try {
      if (await this.store.isInitialized()) return false;
    } catch (e) {
      this.logger.warn(`cannot reach the quota store to check its counters (${(e as Error).message})`);
      return false;
    }
    this.logger.log(`quota counters are empty (${reason}): rebuilding them from the ledger`);
    try {
      // Tenants already rebuilt since (QuotaService rebuilds a tenant on its first request)
      // are skipped: rebuilding them again under load could only lose settles racing it.
      const started = Date.now();
      const reports = await this.rebuild(undefined, { onlyIfUninitialized: true });
      const counters = reports.reduce((n, r) => n + r.written, 0);
      this.logger.log(
        `rebuilt the ${this.store.kind === 'memory' ? 'in-process ' : ''}quota counters of ${reports.length} tenant(s) from the ledger` +
          ` (${counters} counter(s) with usage in their current period) in ${Date.now() - started} ms`,
      );
      return true;
    } catch (e) {
      this.logger.error(`rebuilding quota counters failed (${(e as Error).message}); retrying in 30 s`);
      return false;
    }
  }

  /** The periodic pass: marker check, then tenants whose counters missed a write. */
  async periodic(): Promise<void> {
    await this.ensureInitialized('marker missing');
    for (const [tenantId, missedAt] of [...this.dirty]) {
      try {
        // Skipped when the tenant was rebuilt after the miss's ledger row was written (Redis
        // came back empty and the tenant was rebuilt on its first request): that rebuild
        // counted it, and another one under load could only lose settles racing it.
        await this.rebuild(tenantId, { unlessRebuiltSince: missedAt + this.config.LEDGER_FLUSH_MS + 1000 });
        this.dirty.delete(tenantId);
      } catch (e) {
        this.logger.warn(`tenant ${tenantId}: counters still not rebuilt (${(e as Error).message})`);
        return;
      }
      await yieldToLoop();
    }
  }

  /**
   * Rebuilds one tenant's counters, or every tenant's (then sets the marker). Returns
   * before/after per counter for the CLI. One rebuild per tenant at a time; different
   * tenants in parallel (a tenant's first request after a loss does not wait for a pass
   * over every tenant). Each tenant's marker is set once its counters are rebuilt
   * (QuotaService admits nothing for a tenant without it); `onlyIfUninitialized` skips a
   * tenant whose marker is already set (another instance rebuilt it first) and writes only
   * the counters that have ledger rows in their period (the others are absent, i.e. 0).
   * A tenant whose rebuild fails is left unmarked and retried by the periodic pass.
   */
  async rebuild(
    tenantId?: string,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'> = {},
  ): Promise<RebuildReport[]> {
    if (tenantId) {
      await this.flushOwn();
      const report = await this.rebuildLocked(tenantId, opts);
      return report ? [report] : [];
    }
    const run = (this.running ?? Promise.resolve()).then(() => this.rebuildAll(opts));
    this.running = run.catch(() => undefined);
    return run;
  }

  private async flushOwn(): Promise<void> {
    await this.ledger
      .flushQueue()
      .catch((e: Error) =>
        this.logger.warn(
          `rebuild: own ledger queue not flushed (${e.message}); its rows are not counted yet`,
        ),
      );
  }

  private async rebuildAll(
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'>,
  ): Promise<RebuildReport[]> {
    await this.flushOwn();
    const now = this.clock.now();
    const reports: RebuildReport[] = [];
    for (const id of await this.repo.tenantIds()) {
      const report = await this.rebuildLocked(id, opts);
      if (report) reports.push(report);
    }
    await this.store.markInitialized(now);
    return reports;
  }

  private rebuildLocked(
    tenantId: string,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'>,
  ): Promise<RebuildReport | null> {
    const run = (this.locks.get(tenantId) ?? Promise.resolve())
      .then(() => this.rebuildTenant(tenantId, opts))
      .catch(async (e: unknown) => {
        // admissions of the tenant wait for a rebuild (as after a store loss); retried later
        await this.store.unmarkTenant(tenantId).catch(() => undefined);
        this.markDirty(tenantId);
        throw e;
      });
    const settled = run.catch(() => undefined);
    this.locks.set(tenantId, settled);
    void settled.then(() => {
      if (this.locks.get(tenantId) === settled) this.locks.delete(tenantId);
    });
    return run;
  }

  private async rebuildTenant(
    tenantId: string,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'>,
  ): Promise<RebuildReport | null> {
    if (opts.onlyIfUninitialized && (await this.store.tenantRebuiltAt(tenantId)) !== null) return null;
    const tenant = await this.repo.tenant(tenantId);
    if (!tenant) return null;
    // Rows still in the tenant's ledger stream (Redis) go to PostgreSQL first: the sums below
    // must hold everything the counters count.
    await this.stream.drainTenant(tenantId);
    const now = this.clock.now();
    const tz = this.config.QUOTA_TIMEZONE;
    // Sparse (start, a tenant's first request after a store loss): only the users and keys with
    // ledger rows in their current period get a value (the others are absent, i.e. 0), and only
    // how many were written is reported. Full (CLI, dirty tenants, period changes): every user
    // and key, the ones without rows set to 0, each with its before/after.
    const sparse = opts.onlyIfUninitialized === true;
    const counters: CounterChange[] = [];
    let written = 0;
    /** Counters (tokens or spend) whose value changed. */
    let corrected = 0;
    const tw = periodWindow(tenant.quotaPeriod, now, tz);
    const dw = periodWindow('daily', now, tz);
    const mw = periodWindow('monthly', now, tz);
    const windows = { daily: { from: dw.start!, to: dw.end! }, monthly: { from: mw.start!, to: mw.end! } };
    const byPeriod = { none: periodWindow('none', now, tz), daily: dw, monthly: mw };
    /** Writes one chunk of owners' counters; resolves with their before/after (full) once Redis ran it. */
    const write = (owners: { owner: Owner; sums: Sums }[], markTenant: boolean): Promise<void> => {
      const refs = owners.map(({ owner }) =>
        levelRef(
          owner.level,
          { tenantId, userId: owner.userId, apiKeyId: owner.id },
          { period: owner.period },
          now,
          tz,
          byPeriod[owner.period],
        ),
      );
      const entries: RebuildEntry[] = [];
      owners.forEach(({ sums }, j) =>
        entries.push(
          { key: refs[j].tokensKey, value: sums.tokens, expireAt: refs[j].expireAt },
          { key: refs[j].spendKey, value: sums.costMicros, expireAt: refs[j].expireAt },
        ),
      );
      return this.store.rebuild(tenantId, entries, now, { ...opts, markTenant }).then((changes) => {
        written += owners.length;
        for (const c of changes) if (c.before !== c.after) corrected++;
        if (sparse) return;
        owners.forEach(({ owner }, j) =>
          counters.push({
            level: owner.level,
            id: owner.id,
            key: refs[j].tokensKey,
            tokens: { before: changes[2 * j].before, after: changes[2 * j].after },
            spendMicros: { before: changes[2 * j + 1].before, after: changes[2 * j + 1].after },
          }),
        );
      });
    };
    // Users, then keys, read from PostgreSQL a chunk at a time through a cursor and written a
    // chunk per script: the next chunk is fetched and converted while Redis runs the previous
    // one, and the event loop is free between chunks (100,000 keys must not hold it, nor the
    // heap: rebuild-scale.e2e-spec.ts). The tenant's own counter goes last, with its marker,
    // after every other chunk was written.
    let previous: Promise<void> | null = null;
    for (const level of ['user', 'key'] as const) {
      await this.repo.eachLevelSum(tenantId, level, windows, { all: !sparse, batch: CHUNK }, async (rows) => {
        const run = write(
          rows.map((row) => {
            const r = UsageRepository.levelSumOf(row);
            return { owner: { level, id: r.id, userId: r.userId, period: r.period }, sums: r.sums };
          }),
          false,
        );
        // a chunk that fails while the one before is awaited is not left unhandled
        run.catch(() => undefined);
        await previous;
        previous = run;
        await yieldToLoop();
      });
    }
    await previous;
    const tenantSums =
      (await this.repo.sums(tenantId, 'tenant', [tenantId], tw.start, tw.end)).get(tenantId) ?? ZERO;
    const before = counters.length;
    await write(
      [
        {
          owner: { level: 'tenant', id: tenantId, userId: null, period: tenant.quotaPeriod },
          sums: tenantSums,
        },
      ],
      true,
    );
    // the tenant's counter first in the report (as the CLI prints it)
    if (counters.length > before) counters.unshift(counters.pop()!);
    if (corrected) this.logger.log(`tenant ${tenantId}: ${corrected} counter(s) corrected from the ledger`);
    return { tenantId, counters, written };
  }
}
