import Redis from 'ioredis';
import { RedisConnection } from '@app/database';
import { ApiError } from '@app/observability';
import { FailoverWatcher, levelRef, tenantMarkerKey } from '@app/quota';
import { createDatabase, describeWithRedis } from '../harness/app';
import { LocalSentinel, startSentinel } from '../harness/redis-topologies';
import {
  Instance,
  insertKey,
  insertTenant,
  insertUser,
  ledgerSums,
  startInstance,
  subjectOf,
} from '../quota/harness';

/**
 * The gateway behind Sentinel: a master, one replica, three sentinels (down-after 1000 ms).
 * The master is killed under load; Sentinel promotes the replica and both instances follow
 * it without a restart.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeWithRedis('Redis Sentinel (master + replica, 3 sentinels)', () => {
  const LIMIT = 150 * 10;
  const WORKERS = 16;
  let sentinel: LocalSentinel;
  let db: string;
  let a: Instance;
  let b: Instance;

  beforeAll(async () => {
    sentinel = await startSentinel({ sentinels: 3, downAfterMs: 1000 });
    db = await createDatabase();
    const env = {
      REDIS_SENTINELS: sentinel.sentinelsEnv,
      REDIS_SENTINEL_NAME: sentinel.name,
      LEDGER_FLUSH_MS: '200',
    };
    a = await startInstance({ databaseUrl: db, env });
    b = await startInstance({ databaseUrl: db, env });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await sentinel?.stop();
  });

  it('the master killed under load: the replica is promoted, both instances follow, counters rebuilt, 0 rows lost', async () => {
    expect(await sentinel.masterPort()).toBe(sentinel.master.port);
    const tenantId = await insertTenant(db, { quota_limit: LIMIT });
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { tenant: { tokenLimit: LIMIT, budgetUsd: null, period: 'none' } },
    );
    const stats = { settled: 0, refused: 0, unavailable: 0, other: [] as string[], servedAfterKill: 0 };
    let killedAt = Infinity;
    const stopAt = Date.now() + 7000;
    let n = 0;
    const worker = async () => {
      while (Date.now() < stopAt) {
        const inst = n++ % 2 ? a : b;
        try {
          const { reservation } = await inst.quota.admit(s, {
            model: 'm',
            promptTokens: 6,
            wanted: 4,
          });
          await sleep(2);
          await inst.quota.settle(
            reservation,
            { promptTokens: 6, completionTokens: 4, costMicros: 0 },
            { provider: 'fake', status: 'success' },
          );
          stats.settled++;
          if (Date.now() > killedAt) stats.servedAfterKill++;
        } catch (e) {
          if (e instanceof ApiError && e.getStatus() === 429) stats.refused++;
          else if (e instanceof ApiError && e.getStatus() === 503 && e.code === 'quota_unavailable')
            stats.unavailable++;
          else stats.other.push((e as Error).message);
          await sleep(5);
        }
      }
    };
    const load = Promise.all(Array.from({ length: WORKERS }, worker));
    await sleep(1000);
    killedAt = Date.now();
    await sentinel.master.kill();
    await load;
    // Sentinel names the replica as the master now
    expect(await sentinel.masterPort()).toBe(sentinel.replica.port);
    const handled = () => a.app.get(FailoverWatcher).handled + b.app.get(FailoverWatcher).handled;
    for (let i = 0; handled() === 0 && i < 100; i++) await sleep(100);
    // both instances answer again, without a restart (they may still be moving: retry 503s)
    const followedAfter: number[] = [];
    for (const inst of [a, b]) {
      for (let attempt = 0; ; attempt++) {
        try {
          const { reservation } = await inst.quota.admit(s, {
            model: 'm',
            promptTokens: 6,
            wanted: 4,
          });
          await inst.quota.settle(
            reservation,
            { promptTokens: 6, completionTokens: 4, costMicros: 0 },
            { provider: 'fake', status: 'success' },
          );
          stats.settled++;
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          if (e.getStatus() === 503 && attempt < 150) {
            await sleep(200);
            continue;
          }
          // a 503 past 30 s names the store's error (its cause) in the failure
          expect([e.getStatus(), (e.cause as Error | undefined)?.message]).toEqual([429, undefined]);
          stats.refused++;
        }
        followedAfter.push(Date.now() - killedAt);
        break;
      }
    }
    await Promise.all([a.ledger.flush(), b.ledger.flush()]);
    process.stdout.write(
      `sentinel failover under load: ${JSON.stringify({ ...stats, other: stats.other.length, followedAfter })}\n`,
    );

    expect(stats.other).toEqual([]);
    expect(handled()).toBe(1);
    const redis = new Redis(sentinel.replica.port, '127.0.0.1');
    try {
      expect(Number(await redis.get(tenantMarkerKey(tenantId)))).toBeGreaterThan(killedAt);
      const ledger = await ledgerSums(db, { tenantId });
      expect(ledger.rows).toBe(stats.settled);
      expect(ledger.tokens).toBeLessThanOrEqual(LIMIT + WORKERS * 10);
      const pending = await a.store.pending(tenantId, Date.now());
      const key = levelRef('tenant', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
      expect(Number(await redis.get(key))).toBe(ledger.tokens + pending * 10);
      process.stdout.write(`sentinel: overspend ${ledger.tokens - LIMIT} tokens\n`);
    } finally {
      redis.disconnect();
    }
  });

  it('a connection that ended outside shutdown connects again (ioredis ends a client whose reconnect a failover interrupted)', async () => {
    const client = a.app.get(RedisConnection).client as Redis;
    client.disconnect(); // not our shutdown: the lifecycle is not closing
    await sleep(100);
    expect(client.status).toBe('end');
    for (let i = 0; client.status !== 'ready' && i < 50; i++) await sleep(100);
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
  });
});
