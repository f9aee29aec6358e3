import { Logger } from '@nestjs/common';
import { AppConfig, loadConfig } from '@app/config';
import { ApiError } from '@app/observability';
import { ManualClock } from './clock';
import type { LedgerRecord } from './ledger/ledger-record';
import type { LedgerStreamService } from './ledger/ledger-stream.service';
import type { LedgerService } from './ledger/ledger.service';
import { QuotaMetrics } from './quota-metrics';
import { QuotaService } from './quota.service';
import type { QuotaSubject } from './quota.types';
import type { ReconciliationService } from './reconciliation.service';
import { MemoryQuotaStore } from './store/memory-quota.store';
import { QuotaStore } from './store/quota-store';

const T = '11111111-1111-4111-8111-111111111111';
const U = '22222222-2222-4222-8222-222222222222';
const K = '33333333-3333-4333-8333-333333333333';
const none = { tokenLimit: null, budgetUsd: null, period: 'none' as const };

function subject(
  over: Partial<QuotaSubject> = {},
  limits: Partial<QuotaSubject['limits']> = {},
): QuotaSubject {
  return {
    tenantId: T,
    userId: U,
    apiKeyId: K,
    rateLimitRpm: null,
    allowedModels: null,
    ...over,
    limits: { tenant: none, user: none, key: none, ...limits },
  };
}

function setup(env: Record<string, string> = {}, store: QuotaStore = new MemoryQuotaStore()) {
  const config: AppConfig = loadConfig({
    DATA_DIR: '/tmp/gw-quota-unit',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    ...env,
  });
  const rows: LedgerRecord[] = [];
  const ledger = {
    isFull: false,
    enqueue: (r: LedgerRecord) => rows.push(r) > 0,
  } as unknown as LedgerService;
  const dirty: string[] = [];
  const reconciliation = { markDirty: (t: string) => dirty.push(t) } as unknown as ReconciliationService;
  const clock = new ManualClock(Date.parse('2026-11-22T10:00:00Z'));
  // the in-process store admits a tenant once its counters were rebuilt (here: nothing to rebuild)
  void store.rebuild(T, [], clock.now(), { markTenant: true });
  const stream = { announce: () => Promise.resolve() } as unknown as LedgerStreamService;
  const quota = new QuotaService(store, ledger, reconciliation, clock, config, new QuotaMetrics(), stream);
  return { quota, rows, dirty, clock, ledger, store };
}

async function refusal(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

const meta = { requestId: 'req-1', provider: 'mock', status: 'success', latencyMs: 12 };
/** A fixed reservation of `tokens` (and `cost` micro-dollars): a prompt with no completion. */
const req = (tokens: number, cost = 0) => ({
  model: 'm',
  promptTokens: tokens,
  wanted: 0,
  pricing: { inputPerMillion: tokens ? cost / tokens : 0, outputPerMillion: 0 },
});

describe('QuotaService', () => {
  beforeAll(() => Logger.overrideLogger(false));
  it('admits, returns the six headers, settles into one ledger row', async () => {
    const { quota, rows } = setup();
    const s = subject({ rateLimitRpm: 10 }, { key: { ...none, tokenLimit: 1000, period: 'daily' } });
    const { reservation, headers } = await quota.admit(s, req(300, 50));
    expect(headers).toMatchObject({
      'x-ratelimit-limit-requests': '10',
      'x-ratelimit-remaining-requests': '9',
      'x-ratelimit-reset-requests': '1m0s',
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '700',
      'x-ratelimit-reset-tokens': '14h0m0s',
    });
    const row = await quota.settle(
      reservation,
      { promptTokens: 100, completionTokens: 20, costMicros: 40 },
      meta,
    );
    expect(row).toMatchObject({ tenantId: T, userId: U, apiKeyId: K, promptTokens: 100, costMicros: 40 });
    expect(rows).toHaveLength(1);
    expect(rows[0].createdAt.toISOString()).toBe('2026-11-22T10:00:00.000Z');
    // a second settle is ignored
    expect(
      await quota.settle(reservation, { promptTokens: 1, completionTokens: 1, costMicros: 1 }, meta),
    ).toBeNull();
    expect(rows).toHaveLength(1);
  });

  it('token quota: 429 insufficient_quota naming the level and the limit, with Retry-After', async () => {
    const { quota } = setup();
    const s = subject({}, { user: { ...none, tokenLimit: 500, period: 'monthly' } });
    await quota.admit(s, req(400));
    const e = await refusal(quota.admit(s, req(200)));
    expect(e.getStatus()).toBe(429);
    expect(e.type).toBe('insufficient_quota');
    expect(e.code).toBe('tokens_quota_exceeded');
    expect(e.message).toMatch(/user level.*limit 500 tokens per month/);
    // 2026-11-22T10:00Z -> 2026-12-01T00:00Z
    expect(e.headers['retry-after']).toBe(String(8 * 86400 + 14 * 3600));
    expect(e.headers['x-ratelimit-remaining-tokens']).toBe('100');
    expect(e.headers['x-should-retry']).toBeUndefined();
  });

  it('budget: 429 budget_exceeded in USD; a quota that never resets says do not retry', async () => {
    const { quota } = setup();
    const s = subject({}, { tenant: { ...none, budgetUsd: 1 } });
    await quota.admit(s, req(1, 900_000));
    const e = await refusal(quota.admit(s, req(1, 200_000)));
    expect(e.code).toBe('budget_exceeded');
    expect(e.message).toMatch(/tenant level.*limit \$1\.00 in total/);
    expect(e.headers['x-should-retry']).toBe('false');
    expect(Number(e.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('the narrowest level is named when several would refuse', async () => {
    const { quota } = setup();
    const s = subject({}, { tenant: { ...none, tokenLimit: 10 }, key: { ...none, tokenLimit: 10 } });
    const e = await refusal(quota.admit(s, req(11)));
    expect(e.message).toMatch(/key level/);
  });

  it('rpm: the request over the limit gets 429 rate_limit_exceeded with Retry-After', async () => {
    const { quota, clock } = setup();
    const s = subject({ rateLimitRpm: 2 });
    await quota.admit(s, req(1));
    clock.advance(20_000);
    await quota.admit(s, req(1));
    clock.advance(10_000);
    const e = await refusal(quota.admit(s, req(1)));
    expect(e.getStatus()).toBe(429);
    expect(e.type).toBe('rate_limit_exceeded');
    expect(e.headers['retry-after']).toBe('30');
    expect(e.headers['x-ratelimit-remaining-requests']).toBe('0');
    clock.advance(30_000);
    await expect(quota.admit(s, req(1))).resolves.toBeDefined();
  });

  it('model not allowed: 403 before anything is reserved', async () => {
    const { quota, store } = setup();
    const s = subject({ allowedModels: ['a'] });
    const e = await refusal(quota.admit(s, { ...req(1), model: 'b' }));
    expect(e.getStatus()).toBe(403);
    expect(e.code).toBe('model_not_allowed');
    expect(await store.pending(T, Date.now())).toBe(0);
    expect(() => quota.checkModel(subject({ allowedModels: null }), 'anything')).not.toThrow();
  });

  describe('quota store down', () => {
    class DownStore extends MemoryQuotaStore {
      override reserve(): never {
        throw new Error('Connection is closed.');
      }
      override settle(): never {
        throw new Error('Connection is closed.');
      }
    }

    it('closed: 503 with a clear error, counted', async () => {
      const { quota } = setup({ QUOTA_FAIL_MODE: 'closed' }, new DownStore());
      const e = await refusal(quota.admit(subject(), req(1)));
      expect(e.getStatus()).toBe(503);
      expect(e.code).toBe('quota_unavailable');
      expect(e.message).toMatch(/Redis/);
      expect(quota.storeFailures).toBe(1);
    });

    it('open: served unchecked, ledger still written, tenant marked for reconciliation', async () => {
      const { quota, rows, dirty } = setup({ QUOTA_FAIL_MODE: 'open' }, new DownStore());
      const { reservation } = await quota.admit(subject(), req(1));
      expect(reservation.unchecked).toBe(true);
      await quota.settle(reservation, { promptTokens: 3, completionTokens: 4, costMicros: 5 }, meta);
      expect(rows).toHaveLength(1);
      expect(dirty).toEqual([T]);
      expect(quota.storeFailures).toBe(2);
    });
  });

  it('release gives the reservation back and records a zero row', async () => {
    const { quota, rows, store } = setup();
    const s = subject({}, { key: { ...none, tokenLimit: 100 } });
    const { reservation } = await quota.admit(s, req(100));
    await refusal(quota.admit(s, req(1)));
    await quota.release(reservation, { ...meta, status: 'upstream_error' });
    expect(await store.pending(T, Date.now())).toBe(0);
    await expect(quota.admit(s, req(100))).resolves.toBeDefined();
    expect(rows).toEqual([
      expect.objectContaining({ promptTokens: 0, completionTokens: 0, status: 'upstream_error' }),
    ]);
  });

  it('estimate: prompt + choices x completion; wanted: the client cap, else the deployment max or the default', () => {
    const { quota } = setup({ QUOTA_DEFAULT_MAX_TOKENS: '1000' });
    const p = { inputPerMillion: 1, outputPerMillion: 2 };
    expect(quota.estimate(p, 100, 50)).toEqual({ estimatedTokens: 150, estimatedCostMicros: 200 });
    expect(quota.estimate(p, 100, 50, 3)).toEqual({ estimatedTokens: 250, estimatedCostMicros: 400 });
    expect(quota.estimate(null, 100, 1000)).toEqual({ estimatedTokens: 1100, estimatedCostMicros: 0 });
    expect(quota.wantedCompletionTokens(null)).toBe(1000);
    expect(quota.wantedCompletionTokens(null, 300)).toBe(300);
    expect(quota.wantedCompletionTokens(5000)).toBe(5000); // no configured max: the client's cap stands
    expect(quota.wantedCompletionTokens(5000, 300)).toBe(300); // a configured max bounds it
  });

  it('the allowance: grants what the tightest level has left, down to the minimum, then refuses naming it', async () => {
    const { quota } = setup({ QUOTA_DEFAULT_MAX_TOKENS: '4096', QUOTA_MIN_COMPLETION_TOKENS: '16' });
    const s = subject({}, { key: { ...none, tokenLimit: 3000 }, tenant: { ...none, tokenLimit: 2500 } });
    const a = await quota.admit(s, { model: 'm', promptTokens: 500, wanted: null });
    expect(a.grantedCompletionTokens).toBe(2000); // the tenant's 2500 - prompt 500
    expect(a.headers['x-gateway-max-tokens']).toBe('2000');
    expect(a.reservation.estimatedTokens).toBe(2500);
    await quota.release(a.reservation, meta);
    const b = await quota.admit(s, { model: 'm', promptTokens: 500, wanted: 100 });
    expect(b.grantedCompletionTokens).toBe(100);
    expect(b.headers['x-gateway-max-tokens']).toBeUndefined();
    const c = await quota.admit(s, { model: 'm', promptTokens: 10, wanted: null, choices: 2 });
    expect(c.grantedCompletionTokens).toBe(945); // (2500 - 600 - 10) / 2
    await quota.release(c.reservation, meta);
    await quota.admit(s, { model: 'm', promptTokens: 1895, wanted: 0 });
    // 5 tokens left at the tenant: below the minimum of 16
    const e = await refusal(quota.admit(s, { model: 'm', promptTokens: 0, wanted: null }));
    expect(e.getStatus()).toBe(429);
    expect(e.message).toMatch(
      /tenant level\): limit 2500 tokens in total, 2495 used or reserved, this request needs at least 16/,
    );
    // a client asking for fewer than the minimum is served while that fits
    expect((await quota.admit(s, { model: 'm', promptTokens: 0, wanted: 5 })).grantedCompletionTokens).toBe(
      5,
    );
  });

  it('the allowance in USD: the grant is what the budget pays for at the output price', async () => {
    const { quota } = setup();
    // $0.01 = 10,000 micro-dollars; prompt 1000 x $1/M = 1000; output $3/M: (10000 - 1000) / 3 = 3000 tokens
    const s = subject({}, { key: { ...none, budgetUsd: 0.01 } });
    const pricing = { inputPerMillion: 1, outputPerMillion: 3 };
    const a = await quota.admit(s, { model: 'm', promptTokens: 1000, wanted: null, pricing });
    expect(a.grantedCompletionTokens).toBe(3000);
    expect(a.reservation.estimatedCostMicros).toBe(10_000);
    const e = await refusal(quota.admit(s, { model: 'm', promptTokens: 1, wanted: null, pricing }));
    expect(e.code).toBe('budget_exceeded');
  });

  it('refuses nonsense amounts', async () => {
    const { quota } = setup();
    await expect(quota.admit(subject(), req(-1))).rejects.toThrow(RangeError);
    await expect(quota.admit(subject(), req(1.5))).rejects.toThrow(RangeError);
  });
});
