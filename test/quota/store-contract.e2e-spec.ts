import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';
import {
  ledgerStreamKey,
  levelRef,
  settledKey,
  MemoryQuotaStore,
  QuotaStore,
  RedisQuotaStore,
  tpmKey,
} from '@app/quota';
import { describeWithRedis, redisUrl } from '../harness/app';
import { storeContract } from './store-contract';

describe('QuotaStore contract: in-process', () => {
  const store = new MemoryQuotaStore();
  storeContract(() => store);

  it('starts empty (no marker)', async () => {
    expect(await new MemoryQuotaStore().isInitialized()).toBe(false);
  });
});

/** A key level of tenant `T` with no limit and no period. */
const unlimitedKeyLevel = (T: string) => ({
  ...levelRef('key', { tenantId: T, userId: null, apiKeyId: 'k' }, { period: 'none' }, Date.now(), 'UTC'),
  tokenLimit: null,
  spendLimitMicros: null,
});

/** One reservation of one token at `lv`. */
const reserveOneToken = (s: QuotaStore, T: string, lv: ReturnType<typeof unlimitedKeyLevel>) =>
  s.reserve({
    tenantId: T,
    reservationId: randomUUID(),
    now: Date.now(),
    ttlMs: 1000,
    tokens: 1,
    costMicros: 0,
    levels: [lv],
  });

describeWithRedis('QuotaStore contract: Redis (one Lua script per operation)', () => {
  let redis: Redis;
  let store: RedisQuotaStore;
  beforeAll(() => {
    redis = new Redis(redisUrl()!);
    store = new RedisQuotaStore(redis);
  });
  afterAll(() => redis.quit());

  storeContract(() => store);

  it('settle and release append the usage row to the tenant stream in the same script, once', async () => {
    const T = randomUUID();
    const ids = { tenantId: T, userId: randomUUID(), apiKeyId: randomUUID() };
    const now = Date.now();
    const lv = {
      ...levelRef('key', ids, { period: 'none' }, now, 'UTC'),
      tokenLimit: null,
      spendLimitMicros: null,
    };
    const ref = (id: string) => ({ tenantId: T, reservationId: id, levels: [lv] });
    const a = randomUUID();
    const b = randomUUID();
    for (const id of [a, b])
      await store.reserve({
        tenantId: T,
        reservationId: id,
        now,
        ttlMs: 1000,
        tokens: 5,
        costMicros: 0,
        levels: [lv],
      });
    await store.settle(ref(a), 3, 0, now, { row: '{"id":"a"}' });
    await store.settle(ref(a), 3, 0, now, { row: '{"id":"a"}' });
    await store.release(ref(b), now, { row: '{"id":"b"}' });
    await store.release(ref(b), now, { row: '{"id":"b"}' });
    const entries = await redis.xrange(ledgerStreamKey(T), '-', '+');
    expect(entries.map(([, f]) => f)).toEqual([
      ['r', '{"id":"a"}'],
      ['r', '{"id":"b"}'],
    ]);
    expect(await redis.get(lv.tokensKey)).toBe('3');
  });

  it('counters are plain integers (GET shows the figure); period counters carry a TTL', async () => {
    const T = randomUUID();
    const ids = { tenantId: T, userId: randomUUID(), apiKeyId: randomUUID() };
    const now = Date.now();
    const key = {
      ...levelRef('key', ids, { period: 'daily' }, now, 'UTC'),
      tokenLimit: null,
      spendLimitMicros: null,
    };
    const tenant = {
      ...levelRef('tenant', ids, { period: 'none' }, now, 'UTC'),
      tokenLimit: null,
      spendLimitMicros: null,
    };
    await store.reserve({
      tenantId: T,
      reservationId: randomUUID(),
      now,
      ttlMs: 1000,
      tokens: 1234,
      costMicros: 56,
      levels: [key, tenant],
    });
    expect(await redis.get(key.tokensKey)).toBe('1234');
    expect(await redis.get(key.spendKey)).toBe('56');
    expect(await redis.get(`quota:{${T}}`)).toBe('1234');
    expect(await redis.pttl(key.tokensKey)).toBeGreaterThan(0);
    expect(await redis.pttl(tenant.tokensKey)).toBe(-1);
  });

  it('every key of one operation hashes to one cluster slot', async () => {
    const T = randomUUID();
    const ids = { tenantId: T, userId: randomUUID(), apiKeyId: randomUUID() };
    const keys = ['key', 'user', 'tenant'].flatMap((l) => {
      const r = levelRef(l as 'key', ids, { period: 'monthly' }, Date.now(), 'UTC');
      return [r.tokensKey, r.spendKey];
    });
    keys.push(
      `rpm:{${T}}:${ids.apiKeyId}`,
      `qresv:{${T}}`,
      `qresv:{${T}}:exp`,
      settledKey(T),
      ledgerStreamKey(T),
    );
    const slots = await Promise.all(keys.map((k) => redis.call('CLUSTER', 'KEYSLOT', k).catch(() => null)));
    if (slots[0] === null) {
      // Not a cluster-enabled server: compare the hash tags instead.
      expect(new Set(keys.map((k) => /\{([^}]+)\}/.exec(k)![1]))).toEqual(new Set([T]));
    } else {
      expect(new Set(slots).size).toBe(1);
    }
  });

  it('writes a script alone at once; those sent while another is in flight share one write at setImmediate', async () => {
    // The gateway's connections auto-pipeline (libs/database connectionOptions).
    const piped = new Redis(redisUrl()!, { enableAutoPipelining: true });
    try {
      const s = new RedisQuotaStore(piped);
      await s.isInitialized(); // connected
      const T = randomUUID();
      const lv = unlimitedKeyLevel(T);
      const reserve = () => reserveOneToken(s, T, lv);
      const socket = piped.stream;
      const first = reserve();
      expect(piped.autoPipelineQueueSize).toBe(0); // written, not held for setImmediate
      expect(piped.commandQueue.length).toBe(1);
      expect(socket.writableCorked).toBe(0);
      const second = reserve();
      const third = reserve();
      // held in the corked socket to share one write (not in auto-pipelining's queue)
      expect(piped.autoPipelineQueueSize).toBe(0);
      expect(piped.commandQueue.length).toBe(3);
      expect(socket.writableCorked).toBe(1);
      expect(socket.writableLength).toBeGreaterThan(0);
      await new Promise((r) => setImmediate(r));
      expect(socket.writableCorked).toBe(0);
      const [a, b, c] = await Promise.all([first, second, third]);
      expect([a.ok, b.ok, c.ok]).toEqual([true, true, true]);
      expect(await piped.get(lv.tokensKey)).toBe('3');
    } finally {
      await piped.quit();
    }
  });

  it('keeps the event loop turning while a script waits for Redis, up to spinMs (QUOTA_WAIT_SPIN_MS)', async () => {
    const T = randomUUID();
    const lv = unlimitedKeyLevel(T);
    const pauser = new Redis(redisUrl()!);
    const conn = new Redis(redisUrl()!);
    try {
      await conn.ping();
      // The loop's idle time (asleep in epoll_wait) while one reserve waits ~80 ms for Redis.
      const idleWhileWaiting = async (spinMs: number): Promise<number> => {
        const s = new RedisQuotaStore(conn, { spinMs });
        await pauser.call('CLIENT', 'PAUSE', '80', 'ALL');
        const before = performance.eventLoopUtilization();
        const r = await reserveOneToken(s, T, lv);
        expect(r.ok).toBe(true);
        return performance.eventLoopUtilization(before).idle;
      };
      expect(await idleWhileWaiting(0)).toBeGreaterThan(40); // asleep until the reply
      expect(await idleWhileWaiting(200)).toBeLessThan(20); // turning
      expect(await idleWhileWaiting(10)).toBeGreaterThan(40); // the cap: asleep after 10 ms
    } finally {
      await pauser.quit();
      await conn.quit();
    }
  });

  it("a tpm refusal's time in Redis does not grow with the window (20,000 entries)", async () => {
    const T = randomUUID();
    const lv = unlimitedKeyLevel(T);
    const size = 20_000;
    const now = Date.now();
    const tpm = [{ level: 'key' as const, key: tpmKey('key', T, 'k'), limit: size, windowMs: 60_000 }];
    const reserve = (tokens: number, i = 0) =>
      store.reserve({
        tenantId: T,
        reservationId: randomUUID(),
        now: now + i,
        ttlMs: 60_000,
        tokens,
        costMicros: 0,
        levels: [lv],
        tpm,
      });
    for (let i = 0; i < size; i += 1000)
      await Promise.all(Array.from({ length: 1000 }, (_, k) => reserve(1, i + k)));
    /** Redis' own time in EVALSHA so far (INFO commandstats), in µs, and its calls. */
    const evalsha = async () => {
      const line = (await redis.info('commandstats'))
        .split('\n')
        .find((l) => l.startsWith('cmdstat_evalsha:'))!;
      return [Number(/usec=(\d+)/.exec(line)![1]), Number(/calls=(\d+)/.exec(line)![1])];
    };
    const [us0, calls0] = await evalsha();
    for (let i = 0; i < 50; i++)
      expect(await reserve(10, size)).toMatchObject({
        ok: false,
        reason: 'tpm',
        retryMs: expect.any(Number),
      });
    const [us1, calls1] = await evalsha();
    const perRefusal = (us1 - us0) / (calls1 - calls0);
    process.stdout.write(
      `tpm refusal with ${size} entries in the window: ${perRefusal.toFixed(0)} µs in Redis\n`,
    );
    // reading the whole window took 10+ ms per refusal here; the oldest entries only, well under 1 ms
    expect(perRefusal).toBeLessThan(1000);
  });

  it('survives a SCRIPT FLUSH (scripts are reloaded on NOSCRIPT)', async () => {
    await redis.script('FLUSH');
    const T = randomUUID();
    const key = {
      ...levelRef(
        'tenant',
        { tenantId: T, userId: null, apiKeyId: 'k' },
        { period: 'none' },
        Date.now(),
        'UTC',
      ),
      tokenLimit: 5,
      spendLimitMicros: null,
    };
    const r = await store.reserve({
      tenantId: T,
      reservationId: randomUUID(),
      now: Date.now(),
      ttlMs: 1000,
      tokens: 5,
      costMicros: 0,
      levels: [key],
    });
    expect(r.ok).toBe(true);
  });
});
