import { ApiError } from '@app/observability';
import { AdmitRequest, costMicros, levelRef, QuotaSubject } from '@app/quota';
import { Instance, insertKey, insertTenant, insertUser, ledgerSums, sql, subjectOf } from './harness';

/**
 * Reserve-then-settle under concurrency: 500 requests split over two gateway instances
 * (two ioredis connections, one Redis or one Redis Cluster, one PostgreSQL), through
 * QuotaService. Run by concurrency.e2e-spec.ts (one Redis node) and
 * test/cluster/cluster.e2e-spec.ts (a 3-master cluster).
 *
 * The bound (README "Quotas", QuotaService): for every limit,
 *   final usage <= limit + sum over the requests in flight when the last one was admitted
 *                 of max(0, actual - reserved);
 * 0 when no request uses more than it reserved.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint() / 1000n);

interface Outcome {
  admitted: number;
  refused: number;
  tokensTold: number;
  microsTold: number;
  /** Client-side [admit called, admit resolved, settle resolved] of each admitted request. */
  spans: [number, number, number][];
  refusals: ApiError[];
}

async function hammer(
  instances: Instance[],
  subjects: QuotaSubject[],
  n: number,
  o: {
    /** What admit is asked for: the prompt estimate, the completion cap wanted (null = the default), prices. */
    admit: Omit<AdmitRequest, 'model'> | ((i: number) => Omit<AdmitRequest, 'model'>);
    prompt: number;
    /** Completion tokens the upstream produces: capped at the grant unless it ignores the cap. */
    completion: number;
    ignoresCap?: boolean;
    /** Cost of the actual usage (default 0). */
    cost?: (prompt: number, completion: number) => number;
  },
): Promise<Outcome> {
  const out: Outcome = { admitted: 0, refused: 0, tokensTold: 0, microsTold: 0, spans: [], refusals: [] };
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const inst = instances[i % instances.length];
      const s = subjects[i % subjects.length];
      const called = now();
      let admission;
      try {
        admission = await inst.quota.admit(s, {
          model: 'fake-model',
          ...(typeof o.admit === 'function' ? o.admit(i) : o.admit),
        });
      } catch (e) {
        if (e instanceof ApiError && e.getStatus() === 429) {
          out.refused++;
          out.refusals.push(e);
          return;
        }
        // a 503 names the store's own error (Redis under load, a failed rebuild...)
        if (e instanceof ApiError && e.cause instanceof Error)
          throw new Error(`${e.message}; cause: ${e.cause.message}`, { cause: e });
        throw e;
      }
      const admittedAt = now();
      out.admitted++;
      await sleep(Math.floor(Math.random() * 4)); // the "upstream"
      const completion = o.ignoresCap
        ? o.completion
        : Math.min(o.completion, admission.grantedCompletionTokens);
      const cost = o.cost ? o.cost(o.prompt, completion) : 0;
      await inst.quota.settle(
        admission.reservation,
        { promptTokens: o.prompt, completionTokens: completion, costMicros: cost },
        { requestId: `r-${i}`, provider: 'fake', status: 'success', latencyMs: 1 },
      );
      out.spans.push([called, admittedAt, now()]);
      // what the client was told it used (the response's usage)
      out.tokensTold += o.prompt + completion;
      out.microsTold += cost;
    }),
  );
  return out;
}

/**
 * Upper bound on the requests in flight (store side) when any admitted request was
 * admitted: each store admission happened inside [called, admitted] of its request, and
 * a request is in flight only inside [called, settled] of its own.
 */
function maxInFlightAtAdmission(spans: [number, number, number][]): number {
  let max = 0;
  for (const [c, a] of spans) {
    const k = spans.filter(([c2, , s2]) => c2 <= a && s2 >= c).length;
    max = Math.max(max, k);
  }
  return max;
}

export interface ConcurrencyContext {
  db(): string;
  a(): Instance;
  b(): Instance;
  /** A counter's value in Redis (0 when missing). */
  counter(key: string): Promise<number>;
  /** Creates a tenant (the cluster suite picks ids whose slots land on every master). */
  newTenant?: typeof insertTenant;
}

/** The concurrency cases; call inside a describe whose beforeAll starts the two instances. */
export function concurrencySuite(ctx: ConcurrencyContext): void {
  let db: string;
  let a: Instance;
  let b: Instance;
  const newTenant: typeof insertTenant = (...args) => (ctx.newTenant ?? insertTenant)(...args);
  beforeAll(() => {
    db = ctx.db();
    a = ctx.a();
    b = ctx.b();
  });
  const flushBoth = () => Promise.all([a.ledger.flush(), b.ledger.flush()]);
  const counter = (key: string) => ctx.counter(key);
  /** A fresh tenant, user and key whose key level has a token quota of `limit` (nothing else). */
  const tokenQuotaKey = async (limit: number, keyRow?: Parameters<typeof insertKey>[3]) => {
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId, keyRow);
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { key: { tokenLimit: limit, budgetUsd: null, period: 'none' } },
    );
    return { tenantId, apiKeyId, s };
  };
  const keyColumns = async (ids: string[]) => {
    const [r] = await sql<{ tokens: string; spend: string }>(
      db,
      `SELECT coalesce(sum(current_quota_usage), 0) AS tokens, (coalesce(sum(spend), 0) * 1000000)::bigint AS spend
         FROM api_keys WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    return { tokens: Number(r.tokens), micros: Number(r.spend) };
  };

  it('key level: quota admits N=37 of 500; exactly 37 succeed; Redis = ledger = what clients were told', async () => {
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId, { quota_limit: 37 * 150 });
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { key: { tokenLimit: 37 * 150, budgetUsd: null, period: 'none' } },
    );
    const o = await hammer([a, b], [s], 500, {
      admit: { promptTokens: 100, wanted: 50 },
      prompt: 100,
      completion: 50,
    });
    await flushBoth();
    expect(o.admitted).toBe(37);
    expect(o.refused).toBe(463);
    const key = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    const ledger = await ledgerSums(db, { tenantId, apiKeyId });
    expect(await counter(key)).toBe(37 * 150);
    expect(ledger).toEqual({ rows: 37, tokens: 37 * 150, micros: 0 });
    expect(o.tokensTold).toBe(37 * 150);
    expect((await keyColumns([apiKeyId])).tokens).toBe(37 * 150);
    // the refusals say which level and limit, in OpenAI's shape
    const e = o.refusals[0];
    expect(e.type).toBe('insufficient_quota');
    expect(e.code).toBe('tokens_quota_exceeded');
    expect(e.message).toMatch(/key level\): limit 5550 tokens in total/);
    expect(e.headers['retry-after']).toBeDefined();
    expect(e.headers['x-ratelimit-limit-tokens']).toBe('5550');
  });

  it('user level: three keys of one user, reservations above actual use; never above the user quota', async () => {
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId, { quota_limit: 50 * 120 });
    const keys = [
      await insertKey(db, tenantId, userId),
      await insertKey(db, tenantId, userId),
      await insertKey(db, tenantId, userId),
    ];
    const userLimit = { tokenLimit: 50 * 120, budgetUsd: null, period: 'none' as const };
    const subjects = keys.map((apiKeyId) => subjectOf({ tenantId, userId, apiKeyId }, { user: userLimit }));
    // reserve 200 (prompt + max_tokens), use 120 (less when the grant was lowered)
    const o = await hammer([a, b], subjects, 500, {
      admit: { promptTokens: 80, wanted: 120 },
      prompt: 80,
      completion: 40,
    });
    await flushBoth();
    expect(o.admitted).toBeGreaterThan(0);
    const usage = o.tokensTold;
    expect(usage).toBeLessThanOrEqual(userLimit.tokenLimit); // bound 0: actual <= reserved
    const userKey = levelRef('user', subjects[0], userLimit, Date.now(), 'UTC').tokensKey;
    expect(await counter(userKey)).toBe(usage);
    expect((await ledgerSums(db, { tenantId, userId })).tokens).toBe(usage);
    expect(o.tokensTold).toBe(usage);
    expect((await keyColumns(keys)).tokens).toBe(usage);
    let perKey = 0;
    for (const s of subjects)
      perKey += await counter(levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey);
    expect(perKey).toBe(usage);
    expect(o.refusals[0].message).toMatch(/user level/);
  });

  it('tenant level: three users with two keys each, monthly period', async () => {
    const tenantId = await newTenant(db, { quota_limit: 64 * 100, quota_period: 'monthly' });
    const tenantLimit = { tokenLimit: 64 * 100, budgetUsd: null, period: 'monthly' as const };
    const subjects: QuotaSubject[] = [];
    const keys: string[] = [];
    for (let u = 0; u < 3; u++) {
      const userId = await insertUser(db, tenantId);
      for (let k = 0; k < 2; k++) {
        const apiKeyId = await insertKey(db, tenantId, userId);
        keys.push(apiKeyId);
        subjects.push(subjectOf({ tenantId, userId, apiKeyId }, { tenant: tenantLimit }));
      }
    }
    const o = await hammer([a, b], subjects, 500, {
      admit: { promptTokens: 60, wanted: 40 },
      prompt: 60,
      completion: 40,
    });
    await flushBoth();
    expect(o.admitted).toBe(64);
    const tenantKey = levelRef('tenant', subjects[0], tenantLimit, Date.now(), 'UTC').tokensKey;
    expect(tenantKey).toMatch(/^quota:\{[0-9a-f-]+\}:\d{4}-\d{2}$/);
    expect(await counter(tenantKey)).toBe(6400);
    expect((await ledgerSums(db, { tenantId })).tokens).toBe(6400);
    expect(o.tokensTold).toBe(6400);
    expect((await keyColumns(keys)).tokens).toBe(6400);
    expect(o.refusals[0].message).toMatch(/tenant level\): limit 6400 tokens per month/);
  });

  it('USD budget with pricing: key budget admits 41 requests; spend = ledger cost = cost told', async () => {
    const pricing = { inputPerMillion: 2.5, outputPerMillion: 10 };
    const perRequest = costMicros(pricing, 300, 200); // 750 + 2000 = 2750 micro-dollars
    expect(perRequest).toBe(2750);
    const budgetUsd = (41 * perRequest) / 1e6; // $0.11275
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId, { max_budget: budgetUsd });
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { key: { tokenLimit: null, budgetUsd, period: 'none' } },
    );
    const o = await hammer([a, b], [s], 500, {
      admit: { promptTokens: 300, wanted: 200, pricing },
      prompt: 300,
      completion: 200,
      cost: (p, c) => costMicros(pricing, p, c),
    });
    await flushBoth();
    expect(o.admitted).toBe(41);
    const spendKey = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').spendKey;
    expect(await counter(spendKey)).toBe(41 * 2750);
    expect((await ledgerSums(db, { tenantId, apiKeyId })).micros).toBe(41 * 2750);
    expect(o.microsTold).toBe(41 * 2750);
    expect((await keyColumns([apiKeyId])).micros).toBe(41 * 2750);
    expect(o.refusals[0].code).toBe('budget_exceeded');
    expect(o.refusals[0].message).toMatch(/limit \$0\.112750 in total/);
  });

  it('the allowance: 500 requests, half without a cap, on a 10,000-token key quota: overspend 0, no false refusal', async () => {
    const limit = 10_000;
    const { tenantId, apiKeyId, s } = await tokenQuotaKey(limit, { quota_limit: limit });
    const prompt = 100;
    const min = a.config.QUOTA_MIN_COMPLETION_TOKENS;
    // the upstream honours the cap and writes all of it (the worst case for the quota)
    const o = await hammer([a, b], [s], 500, {
      admit: (i) => ({ promptTokens: prompt, wanted: i % 2 ? null : 300 }),
      prompt,
      completion: Number.MAX_SAFE_INTEGER,
    });
    await flushBoth();
    const ledger = await ledgerSums(db, { tenantId, apiKeyId });
    expect(ledger.tokens).toBeLessThanOrEqual(limit); // overspend 0
    expect(await counter(levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey)).toBe(
      ledger.tokens,
    );
    expect(o.tokensTold).toBe(ledger.tokens);
    expect(ledger.rows).toBe(o.admitted);
    // no false refusal: each was refused with less than prompt + the minimum unreserved
    expect(o.refused).toBeGreaterThan(0);
    for (const e of o.refusals) {
      const used = Number(/(\d+) used or reserved/.exec(e.message)![1]);
      expect(used + prompt + min).toBeGreaterThan(limit);
    }
    // and the quota was used up to less than one minimal request
    expect(limit - ledger.tokens).toBeLessThan(prompt + min);
  });

  it('the allowance in USD: 500 requests, half without a cap, on a $0.05 budget: overspend 0, no false refusal', async () => {
    const pricing = { inputPerMillion: 1, outputPerMillion: 3 };
    const budgetUsd = 0.05;
    const limit = 50_000; // micro-dollars
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId, { max_budget: budgetUsd });
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { key: { tokenLimit: null, budgetUsd, period: 'none' } },
    );
    const prompt = 100;
    const min = a.config.QUOTA_MIN_COMPLETION_TOKENS;
    const o = await hammer([a, b], [s], 500, {
      admit: (i) => ({ promptTokens: prompt, wanted: i % 2 ? null : 300, pricing }),
      prompt,
      completion: Number.MAX_SAFE_INTEGER,
      cost: (p, c) => costMicros(pricing, p, c),
    });
    await flushBoth();
    const ledger = await ledgerSums(db, { tenantId, apiKeyId });
    expect(ledger.micros).toBeLessThanOrEqual(limit);
    expect(await counter(levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').spendKey)).toBe(
      ledger.micros,
    );
    expect(o.microsTold).toBe(ledger.micros);
    const least = costMicros(pricing, prompt, min);
    expect(o.refused).toBeGreaterThan(0);
    for (const e of o.refusals) {
      expect(e.code).toBe('budget_exceeded');
      const used = Math.round(Number(/\$([\d.]+) spent or reserved/.exec(e.message)![1]) * 1e6);
      expect(used + least).toBeGreaterThan(limit);
    }
    expect(limit - ledger.micros).toBeLessThan(least);
  });

  it('actual above the reservation: usage stays within limit + the in-flight overshoot (the stated bound)', async () => {
    const limit = 3000;
    const { tenantId, apiKeyId, s } = await tokenQuotaKey(limit);
    // reserve 80 (prompt 70 + cap 10), use 100: an upstream ignoring the cap overshoots by 20
    const o = await hammer([a, b], [s], 500, {
      admit: { promptTokens: 70, wanted: 10 },
      prompt: 70,
      completion: 30,
      ignoresCap: true,
    });
    await flushBoth();
    const usage = o.admitted * 100;
    const k = maxInFlightAtAdmission(o.spans);
    expect(usage).toBeLessThanOrEqual(limit + k * 20);
    const key = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    expect(await counter(key)).toBe(usage);
    expect((await ledgerSums(db, { tenantId, apiKeyId })).tokens).toBe(usage);
  });

  it('one request at a time (alternating instances): at most one reservation of overshoot', async () => {
    const limit = 990;
    const { s } = await tokenQuotaKey(limit);
    let admitted = 0;
    for (let i = 0; i < 60; i++) {
      const inst = i % 2 ? b : a;
      try {
        const { reservation } = await inst.quota.admit(s, { model: 'm', promptTokens: 70, wanted: 10 });
        await inst.quota.settle(
          reservation,
          { promptTokens: 70, completionTokens: 30, costMicros: 0 },
          { provider: 'fake', status: 'success' },
        );
        admitted++;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
      }
    }
    // the 10th is admitted at 900 + 80 <= 990 and uses 100: 1000 = limit + 10, within one overshoot (20)
    expect(admitted).toBe(10);
    expect(admitted * 100).toBeGreaterThan(limit);
    expect(admitted * 100).toBeLessThanOrEqual(limit + 20);
    const key = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    expect(await counter(key)).toBe(1000);
  });

  it('rpm across both instances: 5 per minute admitted, the 6th gets 429 with Retry-After', async () => {
    const tenantId = await newTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf({ tenantId, userId, apiKeyId }, {}, { rateLimitRpm: 5 });
    const results = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? b : a).quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r) => r.reason as ApiError);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(35);
    for (const e of refused) {
      expect(e.getStatus()).toBe(429);
      expect(e.type).toBe('rate_limit_exceeded');
      const retry = Number(e.headers['retry-after']);
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      expect(e.headers['x-ratelimit-limit-requests']).toBe('5');
      expect(e.headers['x-ratelimit-remaining-requests']).toBe('0');
    }
    const first = (ok[0] as PromiseFulfilledResult<{ headers: Record<string, string> }>).value.headers;
    expect(Object.keys(first).sort()).toEqual([
      'x-ratelimit-limit-requests',
      'x-ratelimit-limit-tokens',
      'x-ratelimit-remaining-requests',
      'x-ratelimit-remaining-tokens',
      'x-ratelimit-reset-requests',
      'x-ratelimit-reset-tokens',
    ]);
  });
}
