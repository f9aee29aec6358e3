import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';
import { createDatabase, describeWithRedis, redisUrl } from '../harness/app';
import { withClient } from '../harness/servers';
import { ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

interface Counter {
  level: string;
  id: string;
  tokens: { before: number; after: number };
  spendMicros: { before: number; after: number };
}

describe('quota:reconcile (compiled CLI)', () => {
  beforeAll(() => ensureCliBuilt(), 180_000);

  it('without REDIS_URL it explains that the counters live in the gateway process', async () => {
    const r = await runCli(['quota:reconcile'], {
      env: { DATABASE_URL: await createDatabase(), DATA_DIR: tempDataDir() },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: REDIS_URL is not set \(nor REDIS_CLUSTER_NODES, REDIS_SENTINELS\): the quota counters live inside the gateway process.*\n$/,
    );
  });

  describeWithRedis('with Redis', () => {
    let url: string;
    let redis: Redis;
    const t = randomUUID();
    const u = randomUUID();
    const k = randomUUID();

    beforeAll(async () => {
      url = await createDatabase();
      redis = new Redis(redisUrl()!);
      await withClient(url, async (c) => {
        await c.query(`INSERT INTO tenants (id, name) VALUES ($1, 'quota-co')`, [t]);
        await c.query(
          `INSERT INTO users (id, tenant_id, email, role) VALUES ($1, $2, 'q@example.test', 'member')`,
          [u, t],
        );
        await c.query(
          `INSERT INTO api_keys (id, tenant_id, user_id, name, key_hash, key_prefix) VALUES ($1, $2, $3, 'q', 'x', 'sk-q')`,
          [k, t, u],
        );
        // The ledger: 2 requests, 300 tokens, 0.003 USD in all.
        for (let i = 0; i < 2; i++)
          await c.query(
            `INSERT INTO usage_records (id, tenant_id, user_id, api_key_id, model, provider, prompt_tokens,
                                        completion_tokens, cost, status)
             VALUES ($1, $2, $3, $4, 'mock-small', 'mock', 100, 50, 0.0015, 'ok')`,
            [randomUUID(), t, u, k],
          );
      });
      // Counters that drifted: the key's too high, the user's lost, the tenant's too low.
      await redis.set(`quota:{${t}}:key:${k}`, 999);
      await redis.set(`quota:{${t}}`, 5);
    });

    afterAll(async () => {
      await redis.quit();
    });

    it('rebuilds the counters from the ledger and prints them before and after, per level', async () => {
      const env = { DATABASE_URL: url, DATA_DIR: tempDataDir(), REDIS_URL: redisUrl()! };
      const r = await runCli(['quota:reconcile', '--tenant', 'quota-co'], { env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Tenant quota-co (${t}): 3 counters, 3 corrected`);
      expect(r.stdout).toMatch(/^ {2}tenant \| +1 \| +1 \| +5 \| +300 \| +0\.00 \| +0\.003$/m);
      expect(r.stdout).toMatch(/^ {2}user +\| +1 \| +1 \| +0 \| +300 \|/m);
      expect(r.stdout).toMatch(/^ {2}key +\| +1 \| +1 \| +999 \| +300 \|/m);
      expect(r.stdout).toContain(`key    | ${k} | 999 -> 300`);
      expect(await redis.get(`quota:{${t}}:key:${k}`)).toBe('300');
      expect(await redis.get(`quota:{${t}}:${u}`)).toBe('300');
      expect(await redis.get(`quota:{${t}}`)).toBe('300');
      expect(await redis.get(`spend:{${t}}`)).toBe('3000');

      const again = await runCli(['quota:reconcile', '--tenant', t, '--json'], { env });
      const [report] = JSON.parse(again.stdout) as { tenantId: string; counters: Counter[] }[];
      expect(report.tenantId).toBe(t);
      expect(report.counters.map((c) => [c.level, c.tokens, c.spendMicros])).toEqual([
        ['tenant', { before: 300, after: 300 }, { before: 3000, after: 3000 }],
        ['user', { before: 300, after: 300 }, { before: 3000, after: 3000 }],
        ['key', { before: 300, after: 300 }, { before: 3000, after: 3000 }],
      ]);
    });
  });
});
