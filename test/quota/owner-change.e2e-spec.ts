import Redis from 'ioredis';
import { ApiError } from '@app/observability';
import { levelRef } from '@app/quota';
import { createDatabase, describeWithRedis, redisUrl } from '../harness/app';
import { Instance, insertKey, insertTenant, insertUser, sql, startInstance, subjectOf } from './harness';

/**
 * Counters keyed by what does not change (issue 12): a key moved to another owner keeps
 * its counts, the new owner's user level counts it from then on, and a rebuild from the
 * ledger (reconciliation uses the same key functions) agrees.
 */
describeWithRedis('a key that changes owner keeps its counters (Redis)', () => {
  let db: string;
  let gw: Instance;
  let redis: Redis;
  beforeAll(async () => {
    db = await createDatabase();
    gw = await startInstance({ databaseUrl: db, redisUrl: redisUrl() });
    redis = new Redis(redisUrl()!);
  });
  afterAll(async () => {
    await redis.quit();
    await gw.close();
  });

  it('keeps the key counts across an owner change, and a rebuild gives the same figures', async () => {
    const meta = { provider: 'fake', status: 'success' };
    const tenantId = await insertTenant(db);
    const [u1, u2] = [await insertUser(db, tenantId), await insertUser(db, tenantId)];
    const apiKeyId = await insertKey(db, tenantId, u1, { quota_limit: 1000 });
    const limits = { key: { tokenLimit: 1000, budgetUsd: null, period: 'none' as const } };
    const before = subjectOf({ tenantId, userId: u1, apiKeyId }, limits);
    const a = await gw.quota.admit(before, { model: 'm', promptTokens: 600, wanted: 0 });
    await gw.quota.settle(a.reservation, { promptTokens: 600, completionTokens: 0, costMicros: 0 }, meta);
    await gw.ledger.flush();

    // the owner changes (keys:assign-owner, PATCH user_id): the guard's principal now names u2
    await sql(db, `UPDATE api_keys SET user_id = $1 WHERE id = $2`, [u2, apiKeyId]);
    const after = subjectOf({ tenantId, userId: u2, apiKeyId }, limits);
    const b = await gw.quota.admit(after, { model: 'm', promptTokens: 100, wanted: null });
    expect(b.grantedCompletionTokens).toBe(300); // 1000 - 600 used under the old owner - 100
    await gw.quota.settle(b.reservation, { promptTokens: 100, completionTokens: 50, costMicros: 0 }, meta);
    await gw.ledger.flush();
    await expect(gw.quota.admit(after, { model: 'm', promptTokens: 300, wanted: 0 })).rejects.toBeInstanceOf(
      ApiError,
    );

    const key = levelRef('key', after, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    const user2 = levelRef('user', after, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    expect(key).not.toContain(u1);
    expect(Number(await redis.get(key))).toBe(750);
    expect(Number(await redis.get(user2))).toBe(150); // the new owner: from the change on

    const [report] = await gw.reconciliation.rebuild(tenantId);
    const byKey = report.counters.find((c) => c.level === 'key' && c.id === apiKeyId)!;
    expect(byKey.tokens).toEqual({ before: 750, after: 750 });
    expect(report.counters.find((c) => c.level === 'user' && c.id === u2)!.tokens.after).toBe(150);
  });
});
