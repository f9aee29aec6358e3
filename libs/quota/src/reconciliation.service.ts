import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { DomainEvents } from '@app/tenancy';
import { QuotaClock } from './clock';
import { levelRef, LevelRef } from './keys';
import { LedgerService } from './ledger/ledger.service';
import { periodWindow } from './periods';
import type { QuotaLevel, QuotaPeriod } from './quota.types';
import { QuotaStore, RebuildEntry, RebuildOptions } from './store/quota-store';
import { Sums, UsageRepository } from './usage/usage.repository';

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
  counters: CounterChange[];
}

/** How often a running instance checks that the counters were not lost (Redis restarted / flushed). */
const CHECK_EVERY_MS = 30_000;
const CHUNK = 500;

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
  private running: Promise<unknown> | null = null;
  private interval?: NodeJS.Timeout;

  constructor(
    private readonly store: QuotaStore,
    private readonly ledger: LedgerService,
    private readonly repo: UsageRepository,
    private readonly clock: QuotaClock,
    private readonly config: AppConfig,
    private readonly events: DomainEvents,
  ) {}

  /**
   * A reset period changed (tenant, user or key): the counters move to a new bucket, which
   * must start from the ledger, not from 0. Runs in the background. Other limit changes need
   * no rebuild: limits are read at each admission.
   */
  onModuleInit(): void {
    const later = (tenantId: string) =>
      void this.rebuild(tenantId).catch((e: Error) =>
        this.logger.warn(`tenant ${tenantId}: counters not rebuilt after a change (${e.message})`),
      );
    this.events.on('quota.period-changed', ({ tenantId }) => later(tenantId));
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
      const reports = await this.rebuild(undefined, { onlyIfUninitialized: true });
      this.logger.log(`rebuilt the quota counters of ${reports.length} tenant(s) from the ledger`);
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
    }
  }

  /**
   * Rebuilds one tenant's counters, or every tenant's (then sets the marker). Returns
   * before/after per counter for the CLI. Calls are serialised. Each tenant's marker is set
   * once its counters are rebuilt (QuotaService admits nothing for a tenant without it);
   * `onlyIfUninitialized` skips a tenant whose marker is already set (another instance
   * rebuilt it first).
   */
  rebuild(
    tenantId?: string,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'> = {},
  ): Promise<RebuildReport[]> {
    const run = (this.running ?? Promise.resolve()).then(() => this.doRebuild(tenantId, opts));
    this.running = run.catch(() => undefined);
    return run;
  }

  private async doRebuild(
    tenantId: string | undefined,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'>,
  ): Promise<RebuildReport[]> {
    await this.ledger
      .flush()
      .catch((e: Error) =>
        this.logger.warn(
          `rebuild: own ledger queue not flushed (${e.message}); its rows are not counted yet`,
        ),
      );
    const now = this.clock.now();
    const ids = tenantId ? [tenantId] : await this.repo.tenantIds();
    const reports: RebuildReport[] = [];
    for (const id of ids) {
      const report = await this.rebuildTenant(id, now, opts);
      if (report) reports.push(report);
    }
    if (!tenantId) await this.store.markInitialized(now);
    return reports;
  }

  private async rebuildTenant(
    tenantId: string,
    now: number,
    opts: Pick<RebuildOptions, 'onlyIfUninitialized' | 'unlessRebuiltSince'>,
  ): Promise<RebuildReport | null> {
    const tenant = await this.repo.tenant(tenantId);
    if (!tenant) return null;
    const owners: Owner[] = [
      { level: 'tenant', id: tenant.id, userId: null, period: tenant.quotaPeriod },
      ...(await this.repo.users(tenantId)).map((u) => ({
        level: 'user' as const,
        id: u.id,
        userId: u.id,
        period: u.quotaPeriod,
      })),
      ...(await this.repo.keys(tenantId)).map((k) => ({
        level: 'key' as const,
        id: k.id,
        userId: k.userId,
        period: k.quotaPeriod,
      })),
    ];
    const tz = this.config.QUOTA_TIMEZONE;
    // One ledger query per (level, period): owners of one level and period share a window.
    const sums = new Map<string, Sums>();
    const groups = new Map<string, Owner[]>();
    for (const o of owners)
      groups.set(`${o.level}/${o.period}`, [...(groups.get(`${o.level}/${o.period}`) ?? []), o]);
    for (const group of groups.values()) {
      const { level, period } = group[0];
      const w = periodWindow(period, now, tz);
      const found = await this.repo.sums(
        tenantId,
        level,
        group.map((o) => o.id),
        w.start,
        w.end,
      );
      for (const [id, s] of found) sums.set(`${level}/${id}`, s);
    }
    const refs: { owner: Owner; ref: LevelRef }[] = owners.map((o) => ({
      owner: o,
      ref: levelRef(o.level, { tenantId, userId: o.userId, apiKeyId: o.id }, { period: o.period }, now, tz),
    }));
    const counters: CounterChange[] = [];
    for (let i = 0; i < refs.length; i += CHUNK) {
      const part = refs.slice(i, i + CHUNK);
      const entries: RebuildEntry[] = part.flatMap(({ owner, ref }) => {
        const s = sums.get(`${owner.level}/${owner.id}`) ?? { tokens: 0, costMicros: 0 };
        return [
          { key: ref.tokensKey, value: s.tokens, expireAt: ref.expireAt },
          { key: ref.spendKey, value: s.costMicros, expireAt: ref.expireAt },
        ];
      });
      const changes = await this.store.rebuild(tenantId, entries, now, {
        ...opts,
        markTenant: i + CHUNK >= refs.length,
      });
      part.forEach(({ owner, ref }, j) => {
        const t = changes[2 * j];
        const s = changes[2 * j + 1];
        counters.push({
          level: owner.level,
          id: owner.id,
          key: ref.tokensKey,
          tokens: { before: t.before, after: t.after },
          spendMicros: { before: s.before, after: s.after },
        });
      });
    }
    const changed = counters.filter(
      (c) => c.tokens.before !== c.tokens.after || c.spendMicros.before !== c.spendMicros.after,
    );
    if (changed.length)
      this.logger.log(`tenant ${tenantId}: ${changed.length} counter(s) corrected from the ledger`);
    return { tenantId, counters };
  }
}
