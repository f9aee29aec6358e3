import request from 'supertest';
import { createTestApp, describeWithRedis, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, masterHeaders, TenantSession } from '../harness/factories';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A changed reset period moves the counters to a new bucket: it starts from the ledger, not 0. */
describeWithRedis('reset period changes rebuild the counters from the ledger', () => {
  let t: TestApp;
  let s: TenantSession;
  beforeAll(async () => {
    t = await createTestApp({ redis: true, env: { LEDGER_FLUSH_MS: '50' } });
    s = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  async function currentTokens(keyId: string, expected: number): Promise<number> {
    let tokens = -1;
    for (let i = 0; i < 50 && tokens !== expected; i++) {
      const res = await request(t.url)
        .get(`/api/v1/api-keys/${keyId}/usage`)
        .set(auth(s.admin.token))
        .expect(200);
      tokens = res.body.current_period.tokens;
      if (tokens !== expected) await sleep(100);
    }
    return tokens;
  }

  it('key, user and tenant period changes', async () => {
    const key = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(s.admin.token))
      .send({ name: 'p' })
      .expect(201);
    let used = 0;
    for (let i = 0; i < 2; i++) {
      const res = await request(t.url)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${key.body.key}`)
        .send({ model: 'mock-gpt', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 20 })
        .expect(200);
      used += res.body.usage.total_tokens;
    }
    expect(await currentTokens(key.body.id, used)).toBe(used);

    await request(t.url)
      .patch(`/api/v1/api-keys/${key.body.id}`)
      .set(auth(s.admin.token))
      .send({ quota_period: 'daily' })
      .expect(200);
    // The daily bucket is new, but today's usage is in the ledger: the counter must show it.
    expect(await currentTokens(key.body.id, used)).toBe(used);

    // A tenant period change also rebuilds (the tenant counter is in its own bucket).
    await request(t.url)
      .patch(`/api/v1/tenants/${s.tenantId}`)
      .set(masterHeaders)
      .send({ quota_period: 'monthly', quota_limit: used + 1 })
      .expect(200);
    await sleep(300);
    // With the tenant's monthly counter rebuilt to `used`, a request that needs more than 1 token is refused.
    const refused = await request(t.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${key.body.key}`)
      .send({ model: 'mock-gpt', messages: [{ role: 'user', content: 'one more' }], max_tokens: 20 });
    expect(refused.status).toBe(429);
    expect(refused.body.error.message).toMatch(/tenant/i);
  });
});
