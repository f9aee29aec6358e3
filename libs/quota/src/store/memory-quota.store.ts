import {
  LevelUsage,
  QuotaStore,
  RebuildChange,
  RebuildEntry,
  RebuildOptions,
  ReleaseResult,
  ReservationRef,
  ReserveRequest,
  ReserveResult,
  RpmState,
  SETTLED_MARKER_MS,
  SettleOptions,
  SettleResult,
  SWEEP_LIMIT,
  TPM_RETRY_SCAN,
  TpmState,
  TpmWindow,
} from './quota-store';
import { allowance } from './allowance';
import { RpmLog, TimeOrderedMap, TpmLog } from './window-log';

interface Held {
  tenantId: string;
  tokens: number;
  cost: number;
  /** Completion tokens granted per choice (answered again to a repeated reserve). */
  granted: number;
  keys: { tokensKey: string; spendKey: string; expireAt: number | null }[];
  expiresAt: number;
}

/**
 * The in-process store for one instance (REDIS_URL unset). Every method runs its steps
 * synchronously (no await between check and write), which makes it as atomic as a Lua
 * script. Same key names and semantics as RedisQuotaStore (one contract suite for both).
 * It starts empty on every start: like a Redis that lost its data, it refuses admissions
 * (`requireInitialized`) of a tenant until that tenant's counters were rebuilt from the
 * ledger; the start-up pass rebuilds every tenant before the gateway listens. Usage rows
 * are not carried here: the LedgerService journals them in DATA_DIR before the settle.
 */
export class MemoryQuotaStore extends QuotaStore {
  readonly kind = 'memory' as const;
  readonly carriesLedger = false;
  /** Reservation ids settled or released lately, with until when they are remembered (insertion order). */
  private readonly done = new Map<string, number>();
  private readonly counters = new Map<string, { value: number; expireAt: number | null }>();
  /**
   * The open reservations of each tenant (ids are scoped by tenant, as in Redis' `qresv:{T}`), in
   * expiry order: a sweep stops at the first one still alive, so it costs what it releases, not
   * every reservation open.
   */
  private readonly held = new Map<string, TimeOrderedMap<Held>>();
  private readonly rpmLogs = new Map<string, RpmLog>();
  /** Tokens-per-minute windows: reservation id -> admission time and tokens. */
  private readonly tpmLogs = new Map<string, TpmLog>();
  private initialized = false;
  private readonly rebuiltAt = new Map<string, number>();
  private readonly unmarked = new Set<string>();

  private get(key: string, now: number): number {
    const c = this.counters.get(key);
    if (!c) return 0;
    if (c.expireAt !== null && c.expireAt <= now) {
      this.counters.delete(key);
      return 0;
    }
    return c.value;
  }

  private adjust(key: string, delta: number, expireAt: number | null, now: number): void {
    if (delta === 0) return;
    this.get(key, now); // drops an expired counter first, as Redis would have
    const c = this.counters.get(key);
    if (!c) {
      if (delta > 0) this.counters.set(key, { value: delta, expireAt });
      return;
    }
    c.value += delta;
    if (c.expireAt === null) c.expireAt = expireAt;
  }

  private hold(id: string, h: Held): void {
    let open = this.held.get(h.tenantId);
    if (!open) this.held.set(h.tenantId, (open = new TimeOrderedMap((o: Held) => o.expiresAt)));
    open.set(id, h);
  }

  private drop(id: string, h: Held): void {
    const open = this.held.get(h.tenantId);
    open?.delete(id);
    if (open?.size === 0) this.held.delete(h.tenantId);
  }

  private heldOf(tenantId: string, id: string): Held | undefined {
    return this.held.get(tenantId)?.get(id);
  }

  private sweep(tenantId: string, now: number): void {
    let n = 0;
    for (const [id, h] of this.held.get(tenantId) ?? []) {
      if (n >= SWEEP_LIMIT || h.expiresAt > now) break;
      this.unhold(id, h, now);
      n++;
    }
  }

  private unhold(id: string, h: Held, now: number): void {
    for (const k of h.keys) {
      this.adjust(k.tokensKey, -h.tokens, k.expireAt, now);
      this.adjust(k.spendKey, -h.cost, k.expireAt, now);
    }
    this.drop(id, h);
  }

  private usage(levels: { tokensKey: string; spendKey: string }[], now: number): LevelUsage[] {
    return levels.map((l) => ({
      tokens: this.get(l.tokensKey, now),
      spendMicros: this.get(l.spendKey, now),
    }));
  }

  reserve(req: ReserveRequest): Promise<ReserveResult> {
    const { now } = req;
    if (req.requireInitialized && !this.isMarked(req.tenantId))
      return Promise.resolve({ ok: false, reason: 'uninitialized' });
    this.sweep(req.tenantId, now);
    const windows = req.tpm ?? [];
    const prior = this.heldOf(req.tenantId, req.reservationId);
    if (prior) {
      // the same reserve again (a retried call): it counts once
      const rpm = req.rpm ? this.rpmState(req.rpm, now) : null;
      return Promise.resolve({
        ok: true,
        usage: this.usage(req.levels, now),
        rpm,
        granted: prior.granted,
        tokens: prior.tokens,
        costMicros: prior.cost,
        tpm: windows.map((w) => this.tpmState(w, now)),
      });
    }
    let rpm = null;
    if (req.rpm) {
      rpm = this.rpmState(req.rpm, now);
      if (rpm.count >= req.rpm.limit) return Promise.resolve({ ok: false, reason: 'rpm', rpm });
    }
    const usage = this.usage(req.levels, now);
    const tpm = windows.map((w) => this.tpmState(w, now));
    const a = allowance(req.levels, usage, req.tokens, req.costMicros, req.completion, tpm);
    if (!a.ok && a.reason === 'tpm') {
      const least =
        req.tokens +
        (req.completion?.choices ?? 1) * Math.min(req.completion?.wanted ?? 0, req.completion?.min ?? 0);
      const w = windows[a.windowIndex];
      return Promise.resolve({
        ok: false,
        reason: 'tpm',
        windowIndex: a.windowIndex,
        tpm,
        retryMs: this.tpmRetry(w, tpm[a.windowIndex].used + least - w.limit, now),
        usage,
        rpm,
      });
    }
    if (!a.ok) return Promise.resolve({ ...a, usage, rpm });
    for (const l of req.levels) {
      this.adjust(l.tokensKey, a.tokens, l.expireAt, now);
      this.adjust(l.spendKey, a.costMicros, l.expireAt, now);
    }
    this.hold(req.reservationId, {
      tenantId: req.tenantId,
      tokens: a.tokens,
      cost: a.costMicros,
      granted: a.granted,
      keys: req.levels.map((l) => ({ tokensKey: l.tokensKey, spendKey: l.spendKey, expireAt: l.expireAt })),
      expiresAt: now + req.ttlMs,
    });
    if (req.rpm && rpm) {
      let log = this.rpmLogs.get(req.rpm.key);
      if (!log) this.rpmLogs.set(req.rpm.key, (log = new RpmLog()));
      log.add(now);
      rpm = {
        ...rpm,
        count: log.count,
        resetMs: Math.min(req.rpm.windowMs, log.oldest! + req.rpm.windowMs - now),
      };
    }
    for (const w of windows) {
      let log = this.tpmLogs.get(w.key);
      if (!log) this.tpmLogs.set(w.key, (log = new TpmLog()));
      log.add(req.reservationId, now, a.tokens);
    }
    return Promise.resolve({
      ok: true,
      usage: this.usage(req.levels, now),
      rpm,
      granted: a.granted,
      tokens: a.tokens,
      costMicros: a.costMicros,
      tpm: windows.map((w) => this.tpmState(w, now)),
    });
  }

  /** Drops the window's entries older than `windowMs`, then its figures. */
  private tpmState(w: TpmWindow, now: number): TpmState {
    const log = this.tpmLogs.get(w.key);
    if (!log) return { limit: w.limit, used: 0, resetMs: 0 };
    log.trim(now - w.windowMs);
    if (log.size === 0) {
      this.tpmLogs.delete(w.key);
      return { limit: w.limit, used: 0, resetMs: 0 };
    }
    return { limit: w.limit, used: log.used, resetMs: log.oldest! + w.windowMs - now };
  }

  /**
   * Until `need` tokens have left the window (oldest first); null when the window does not hold
   * that many. Among its oldest TPM_RETRY_SCAN entries only, else until the last of them leaves
   * (a lower bound), as the Redis script.
   */
  private tpmRetry(w: TpmWindow, need: number, now: number): number | null {
    const log = this.tpmLogs.get(w.key);
    if (!log || need > log.used) return null;
    let freed = 0;
    let seen = 0;
    let retry: number | null = null;
    for (const e of log.values()) {
      freed += e.tokens;
      retry = Math.min(w.windowMs, Math.max(1, e.at + w.windowMs - now));
      if (freed >= need || ++seen >= TPM_RETRY_SCAN) break;
    }
    return retry;
  }

  /** Settle: the window entries of the reservation hold `tokens` from now on (0: removed). */
  private tpmCorrect(ref: ReservationRef, tokens: number | null): void {
    for (const key of ref.tpm ?? []) this.tpmLogs.get(key)?.correct(ref.reservationId, tokens);
  }

  private rpmState(r: NonNullable<ReserveRequest['rpm']>, now: number): RpmState {
    const log = this.rpmLogs.get(r.key);
    log?.trim(now - r.windowMs);
    if (!log?.count) {
      if (log) this.rpmLogs.delete(r.key);
      return { limit: r.limit, count: 0, resetMs: 0 };
    }
    return {
      limit: r.limit,
      count: log.count,
      resetMs: Math.min(r.windowMs, log.oldest! + r.windowMs - now),
    };
  }

  /** True when `id` was settled or released within its marker's lifetime; else remembers it. */
  private once(id: string, now: number, opts: SettleOptions): boolean {
    for (const [k, until] of this.done) {
      if (until > now) break;
      this.done.delete(k);
    }
    const until = this.done.get(id);
    if (until !== undefined && until > now) return true;
    this.done.delete(id); // re-inserted last: the map stays (roughly) in expiry order
    this.done.set(id, now + (opts.markerTtlMs ?? SETTLED_MARKER_MS));
    return false;
  }

  settle(
    ref: ReservationRef,
    tokens: number,
    costMicros: number,
    now: number,
    opts: SettleOptions = {},
  ): Promise<SettleResult> {
    if (this.once(ref.reservationId, now, opts))
      return Promise.resolve({ late: false, duplicate: true, usage: this.usage(ref.levels, now) });
    this.sweep(ref.tenantId, now);
    const h = this.heldOf(ref.tenantId, ref.reservationId);
    if (h) this.drop(ref.reservationId, h);
    this.tpmCorrect(ref, tokens);
    for (const l of ref.levels) {
      this.adjust(l.tokensKey, tokens - (h?.tokens ?? 0), l.expireAt, now);
      this.adjust(l.spendKey, costMicros - (h?.cost ?? 0), l.expireAt, now);
    }
    return Promise.resolve({ late: !h, duplicate: false, usage: this.usage(ref.levels, now) });
  }

  release(ref: ReservationRef, now: number, opts: SettleOptions = {}): Promise<ReleaseResult> {
    if (this.once(ref.reservationId, now, opts)) return Promise.resolve('duplicate');
    this.sweep(ref.tenantId, now);
    this.tpmCorrect(ref, null);
    const h = this.heldOf(ref.tenantId, ref.reservationId);
    if (!h) return Promise.resolve('expired');
    this.unhold(ref.reservationId, h, now);
    return Promise.resolve('released');
  }

  /**
   * Rebuilt since start, or (once the start-up pass set the global marker) any tenant not
   * explicitly unmarked: a tenant created after start has no ledger row this process did
   * not count (one instance), so it needs no rebuild.
   */
  private isMarked(tenantId: string): boolean {
    if (this.unmarked.has(tenantId)) return false;
    return this.rebuiltAt.has(tenantId) || this.initialized;
  }

  unmarkTenant(tenantId: string): Promise<void> {
    this.unmarked.add(tenantId);
    this.rebuiltAt.delete(tenantId);
    return Promise.resolve();
  }

  tenantRebuiltAt(tenantId: string): Promise<number | null> {
    return Promise.resolve(this.isMarked(tenantId) ? (this.rebuiltAt.get(tenantId) ?? 0) : null);
  }

  read(tenantId: string, keys: string[], now: number): Promise<number[]> {
    this.sweep(tenantId, now);
    return Promise.resolve(keys.map((k) => this.get(k, now)));
  }

  pending(tenantId: string, now: number): Promise<number> {
    this.sweep(tenantId, now);
    return Promise.resolve(this.held.get(tenantId)?.size ?? 0);
  }

  rebuild(
    tenantId: string,
    entries: RebuildEntry[],
    now: number,
    opts: RebuildOptions = {},
  ): Promise<RebuildChange[]> {
    const rebuiltAt = this.rebuiltAt.get(tenantId) ?? -Infinity;
    if (
      (opts.onlyIfUninitialized && this.isMarked(tenantId)) ||
      (opts.unlessRebuiltSince !== undefined && rebuiltAt >= opts.unlessRebuiltSince)
    ) {
      // another caller rebuilt this tenant first, or it was rebuilt since
      return Promise.resolve(
        entries.map((e) => ({ key: e.key, before: this.get(e.key, now), after: this.get(e.key, now) })),
      );
    }
    this.sweep(tenantId, now);
    const pend = new Map<string, number>();
    for (const h of this.held.get(tenantId)?.values() ?? []) {
      for (const k of h.keys) {
        pend.set(k.tokensKey, (pend.get(k.tokensKey) ?? 0) + h.tokens);
        pend.set(k.spendKey, (pend.get(k.spendKey) ?? 0) + h.cost);
      }
    }
    if (opts.markTenant) {
      this.rebuiltAt.set(tenantId, now);
      this.unmarked.delete(tenantId);
    }
    return Promise.resolve(
      entries.map((e) => {
        const before = this.get(e.key, now);
        const after = e.value + (pend.get(e.key) ?? 0);
        this.counters.set(e.key, { value: after, expireAt: e.expireAt });
        return { key: e.key, before, after };
      }),
    );
  }

  isInitialized(): Promise<boolean> {
    return Promise.resolve(this.initialized);
  }

  markInitialized(): Promise<void> {
    this.initialized = true;
    return Promise.resolve();
  }

  /** Test helper: forget everything (as a Redis FLUSHALL would). */
  clear(): void {
    this.counters.clear();
    this.held.clear();
    this.rpmLogs.clear();
    this.tpmLogs.clear();
    this.rebuiltAt.clear();
    this.unmarked.clear();
    this.done.clear();
    this.initialized = false;
  }
}
