import Redis from 'ioredis';
import { ApiError } from '@app/observability';
import { ManualClock, QuotaLimits } from '@app/quota';
import { createDatabase, describeWithRedis, redisUrl } from '../harness/app';
import {
  Instance,
  insertKey,
  insertTenant,
  insertUser,
  ledgerSums,
  startInstance,
  subjectOf,
} from './harness';

const DAY = 86_400_000;
const meta = { provider: 'fake', status: 'success' };

/** Today's date at hh:mm:ss UTC, near real time (Redis expires period counters by wall clock). */
function todayAt(h: number, m: number, s: number): number {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), h, m, s);
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

describeWithRedis('reset periods with the injectable clock (two instances, one clock)', () => {
  let db: string;
  let a: Instance;
  let b: Instance;
  let tokyo: Instance;
  let redis: Redis;
  const clock = new ManualClock();

  beforeAll(async () => {
    db = await createDatabase();
    a = await startInstance({ databaseUrl: db, redisUrl: redisUrl(), clock });
    b = await startInstance({ databaseUrl: db, redisUrl: redisUrl(), clock });
    tokyo = await startInstance({
      databaseUrl: db,
      redisUrl: redisUrl(),
      clock,
      env: { QUOTA_TIMEZONE: 'Asia/Tokyo' },
    });
    redis = new Redis(redisUrl()!);
  });
  afterAll(async () => {
    await redis.quit();
    await Promise.all([a.close(), b.close(), tokyo.close()]);
  });

  async function seed(limits: QuotaLimits) {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId, {
      quota_limit: limits.tokenLimit,
      quota_period: limits.period,
    });
    return { tenantId, userId, apiKeyId, s: subjectOf({ tenantId, userId, apiKeyId }, { key: limits }) };
  }
  const use = async (inst: Instance, s: ReturnType<typeof subjectOf>, tokens: number) => {
    const { reservation, headers } = await inst.quota.admit(s, {
      model: 'm',
      promptTokens: tokens,
      wanted: 0,
    });
    await inst.quota.settle(reservation, { promptTokens: tokens, completionTokens: 0, costMicros: 0 }, meta);
    return headers;
  };

  it('daily: exhausted at 23:59:59 (Retry-After 1 s), fresh at midnight, old bucket kept', async () => {
    clock.set(todayAt(23, 59, 0));
    const { s, tenantId, apiKeyId } = await seed({ tokenLimit: 1000, budgetUsd: null, period: 'daily' });
    const h = await use(a, s, 600);
    expect(h['x-ratelimit-remaining-tokens']).toBe('400');
    expect(h['x-ratelimit-reset-tokens']).toBe('1m0s');
    await use(b, s, 400);
    clock.set(todayAt(23, 59, 59));
    const e = await refusal(a.quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }));
    expect(e.code).toBe('tokens_quota_exceeded');
    expect(e.message).toMatch(/per day/);
    expect(e.headers['retry-after']).toBe('1');
    clock.advance(1000); // midnight UTC
    const h2 = await use(b, s, 10);
    expect(h2['x-ratelimit-remaining-tokens']).toBe('990');
    const day = (t: number) => new Date(t).toISOString().slice(0, 10);
    const base = `quota:{${tenantId}}:key:${apiKeyId}`;
    expect(await redis.get(`${base}:${day(clock.now() - 1)}`)).toBe('1000');
    expect(await redis.get(`${base}:${day(clock.now())}`)).toBe('10');
    // rebuilding counts the new day only
    await Promise.all([a.ledger.flush(), b.ledger.flush()]);
    await a.reconciliation.rebuild(tenantId);
    expect(await redis.get(`${base}:${day(clock.now())}`)).toBe('10');
    expect((await ledgerSums(db, { tenantId })).tokens).toBe(1010);
  });

  it('monthly: rolls over on the 1st', async () => {
    const d = new Date();
    const firstOfNext = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    clock.set(firstOfNext - 5000);
    const { s } = await seed({ tokenLimit: 100, budgetUsd: null, period: 'monthly' });
    await use(a, s, 100);
    const e = await refusal(b.quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }));
    expect(e.message).toMatch(/per month/);
    expect(e.headers['retry-after']).toBe('5');
    clock.set(firstOfNext);
    await expect(use(b, s, 100)).resolves.toBeDefined();
  });

  it('a period never resets with `none`: Retry-After a day, x-should-retry false', async () => {
    clock.set(Date.now());
    const { s } = await seed({ tokenLimit: 10, budgetUsd: null, period: 'none' });
    await use(a, s, 10);
    clock.advance(40 * DAY);
    const e = await refusal(a.quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }));
    expect(e.headers['x-should-retry']).toBe('false');
    expect(e.headers['retry-after']).toBe('86400');
    expect(e.message).toMatch(/in total.*does not reset/);
  });

  it('QUOTA_TIMEZONE: in Tokyo the day starts at 15:00 UTC', async () => {
    clock.set(todayAt(14, 59, 59));
    const { s } = await seed({ tokenLimit: 50, budgetUsd: null, period: 'daily' });
    await use(tokyo, s, 50);
    const e = await refusal(tokyo.quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }));
    expect(e.headers['retry-after']).toBe('1');
    clock.set(todayAt(15, 0, 0));
    await expect(use(tokyo, s, 50)).resolves.toBeDefined();
  });

  it('a reservation that outlives QUOTA_RESERVATION_TTL_SECONDS is released for the others', async () => {
    clock.set(Date.now());
    const { s } = await seed({ tokenLimit: 100, budgetUsd: null, period: 'none' });
    await a.quota.admit(s, { model: 'm', promptTokens: 100, wanted: 0 }); // never settled (a crash)
    await refusal(b.quota.admit(s, { model: 'm', promptTokens: 1, wanted: 0 }));
    clock.advance(a.config.QUOTA_RESERVATION_TTL_SECONDS * 1000);
    await expect(use(b, s, 100)).resolves.toBeDefined();
  });
});
