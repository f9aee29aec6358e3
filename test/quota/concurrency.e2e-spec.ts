import Redis from 'ioredis';
import { createDatabase, describeWithRedis, redisUrl } from '../harness/app';
import { concurrencySuite } from './concurrency';
import { Instance, startInstance } from './harness';

/** The concurrency cases (./concurrency.ts) on one Redis node. */
describeWithRedis('quota under concurrency: two instances, one Redis, one PostgreSQL', () => {
  let db: string;
  let a: Instance;
  let b: Instance;
  let redis: Redis;

  beforeAll(async () => {
    db = await createDatabase();
    a = await startInstance({ databaseUrl: db, redisUrl: redisUrl() });
    b = await startInstance({ databaseUrl: db, redisUrl: redisUrl() });
    redis = new Redis(redisUrl()!);
  });
  afterAll(async () => {
    await redis.quit();
    await Promise.all([a.close(), b.close()]);
  });

  concurrencySuite({
    db: () => db,
    a: () => a,
    b: () => b,
    counter: async (key) => Number((await redis.get(key)) ?? 0),
  });
});
