import { Logger } from '@nestjs/common';
import { AppConfig, loadConfig } from '@app/config';
import { ApiError } from '@app/observability';
import { ManualClock } from './clock';
import type { LedgerStreamService } from './ledger/ledger-stream.service';
import type { LedgerService } from './ledger/ledger.service';
import { QuotaMetrics } from './quota-metrics';
import { QuotaService } from './quota.service';
import type { QuotaSubject } from './quota.types';
import type { ReconciliationService } from './reconciliation.service';
import { MemoryQuotaStore } from './store/memory-quota.store';
import type { ReserveRequest, ReserveResult } from './store/quota-store';

/**
 * A store that lost a tenant's counters (Redis restarted empty or flushed) must not admit
 * against 0: QuotaService rebuilds them from the ledger first (found by the reliability
 * suite: after a Redis restart, a key whose quota was used up was admitted again, up to its
 * whole quota, until the 30 s marker check rebuilt the counters).
 */
const T = '11111111-1111-4111-8111-111111111111';
const none = { tokenLimit: null, budgetUsd: null, period: 'none' as const };
const subject: QuotaSubject = {
  tenantId: T,
  userId: '22222222-2222-4222-8222-222222222222',
  apiKeyId: '33333333-3333-4333-8333-333333333333',
  rateLimitRpm: null,
  allowedModels: null,
  limits: { tenant: none, user: none, key: { ...none, tokenLimit: 100 } },
};

/** The in-process store, made to behave like a Redis that lost the tenant's marker. */
class LostStore extends MemoryQuotaStore {
  marked = false;
  requests: ReserveRequest[] = [];
  override reserve(req: ReserveRequest): Promise<ReserveResult> {
    this.requests.push(req);
    if (req.requireInitialized && !this.marked)
      return Promise.resolve({ ok: false, reason: 'uninitialized' });
    return super.reserve({ ...req, requireInitialized: false });
  }
}

/** `storeLost`: no global marker either (Redis restarted empty); default: only this tenant lacks its marker. */
function setup(
  rebuild: (store: LostStore) => Promise<unknown>,
  env: Record<string, string> = {},
  storeLost = false,
) {
  const config: AppConfig = loadConfig({
    DATA_DIR: '/tmp/gw-quota-unit',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    ...env,
  });
  const store = new LostStore();
  if (!storeLost) void store.markInitialized();
  const ledger = { isFull: false, enqueue: () => true } as unknown as LedgerService;
  const calls: unknown[][] = [];
  const reconciliation = {
    markDirty: () => undefined,
    rebuild: (...args: unknown[]) => {
      calls.push(args);
      return rebuild(store);
    },
  } as unknown as ReconciliationService;
  const quota = new QuotaService(
    store,
    ledger,
    reconciliation,
    new ManualClock(Date.parse('2026-11-22T10:00:00Z')),
    config,
    new QuotaMetrics(),
    { announce: () => Promise.resolve() } as unknown as LedgerStreamService,
  );
  return { quota, store, calls };
}

const req = { model: 'm', promptTokens: 10, wanted: 0 };

describe('QuotaService: a store without the tenant counters', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('asks the store to refuse uncounted tenants, rebuilds once for concurrent admits, then counts', async () => {
    const { quota, store, calls } = setup(async (s) => {
      await new Promise((r) => setTimeout(r, 20));
      s.marked = true;
      return [];
    });
    const admitted = await Promise.allSettled(Array.from({ length: 15 }, () => quota.admit(subject, req)));
    expect(store.requests.every((r) => r.requireInitialized === true)).toBe(true);
    expect(calls).toEqual([[T, { onlyIfUninitialized: true }]]);
    // the key's quota (100 tokens) admits 10 of the 15, as if nothing had been lost
    expect(admitted.filter((a) => a.status === 'fulfilled')).toHaveLength(10);
    const refused = admitted.filter((a) => a.status === 'rejected') as PromiseRejectedResult[];
    expect(refused.map((r) => (r.reason as ApiError).code)).toEqual(Array(5).fill('tokens_quota_exceeded'));
  });

  it('waits LEDGER_FLUSH_MS + 1 s before rebuilding when the whole store was lost (rows still queued land first)', async () => {
    const rebuild = async (st: LostStore) => {
      st.marked = true;
      return [];
    };
    const lost = setup(rebuild, { LEDGER_FLUSH_MS: '10' }, true);
    let t0 = Date.now();
    await lost.quota.admit(subject, req);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    const kept = setup(rebuild, { LEDGER_FLUSH_MS: '10' });
    t0 = Date.now();
    await kept.quota.admit(subject, req);
    expect(Date.now() - t0).toBeLessThan(500); // a new tenant in a store that was not lost: no wait
  });

  it('closed mode: 503 quota_unavailable when the rebuild fails (PostgreSQL down) or leaves no marker', async () => {
    const failing = setup(() => Promise.reject(new Error('connect ECONNREFUSED')));
    const e1 = await failing.quota.admit(subject, req).catch((e: ApiError) => e);
    expect([(e1 as ApiError).getStatus(), (e1 as ApiError).code]).toEqual([503, 'quota_unavailable']);
    const noMarker = setup(() => Promise.resolve([]));
    const e2 = await noMarker.quota.admit(subject, req).catch((e: ApiError) => e);
    expect([(e2 as ApiError).getStatus(), (e2 as ApiError).code]).toEqual([503, 'quota_unavailable']);
    expect(noMarker.store.requests).toHaveLength(2);
  });

  it('open mode: served uncounted when the counters cannot be rebuilt', async () => {
    const { quota } = setup(() => Promise.reject(new Error('down')), { QUOTA_FAIL_MODE: 'open' });
    const { reservation } = await quota.admit(subject, req);
    expect(reservation.unchecked).toBe(true);
  });

  it('the in-process store starts empty: requireInitialized refuses until the tenant is rebuilt; onlyIfUninitialized writes once', async () => {
    const store = new MemoryQuotaStore();
    const now = Date.now();
    const key = { key: `quota:{${T}}`, value: 42, expireAt: null };
    const level = {
      level: 'tenant' as const,
      id: T,
      tokensKey: key.key,
      spendKey: `spend:{${T}}`,
      period: 'none' as const,
      expireAt: null,
      tokenLimit: null,
      spendLimitMicros: null,
    };
    const reserve = () =>
      store.reserve({
        tenantId: T,
        reservationId: 'r1',
        now,
        ttlMs: 1000,
        tokens: 5,
        costMicros: 0,
        levels: [level],
        requireInitialized: true,
      });
    expect(await reserve()).toEqual({ ok: false, reason: 'uninitialized' });
    expect(await store.rebuild(T, [key], now, { onlyIfUninitialized: true, markTenant: true })).toEqual([
      { key: key.key, before: 0, after: 42 },
    ]);
    expect((await reserve()).ok).toBe(true);
    expect(await store.rebuild(T, [key], now, { onlyIfUninitialized: true })).toEqual([
      { key: key.key, before: 47, after: 47 },
    ]);
    expect(await store.rebuild(T, [key], now, { markTenant: true })).toEqual([
      { key: key.key, before: 47, after: 47 },
    ]);
  });
});
