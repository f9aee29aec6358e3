import request from 'supertest';
import { RefusalTally } from '@app/observability';
import { QuotaSubject, RefusalFlusher } from '@app/quota';
import { createDatabase, MASTER_KEY } from '../harness/app';
import {
  auth,
  createTenantWithAdmin,
  createUser,
  masterIn,
  TenantSession,
  UserSession,
} from '../harness/factories';
import { Instance, insertKey, sql, startInstance, subjectOf } from './harness';

const master = { Authorization: `Bearer ${MASTER_KEY}` };

describe('usage API and quota fields on the admin routes (in-process store)', () => {
  let db: string;
  let inst: Instance;
  let a: TenantSession;
  let b: TenantSession;
  let m1: UserSession;
  let m2: UserSession;
  let k1: string;
  let k2: string;
  let k3: string;
  let kb: string;

  async function charge(s: QuotaSubject, model: string, prompt: number, completion: number, micros: number) {
    const { reservation } = await inst.quota.admit(s, {
      model,
      promptTokens: prompt + completion,
      wanted: 0,
    });
    await inst.quota.settle(
      reservation,
      { promptTokens: prompt, completionTokens: completion, costMicros: micros },
      {
        provider: 'fake',
        status: 'success',
        latencyMs: 5,
      },
    );
  }

  beforeAll(async () => {
    db = await createDatabase();
    inst = await startInstance({ databaseUrl: db });
    expect(inst.store.kind).toBe('memory');
    a = await createTenantWithAdmin(inst.url);
    b = await createTenantWithAdmin(inst.url);
    m1 = await createUser(inst.url, a.tenantId, 'member');
    m2 = await createUser(inst.url, a.tenantId, 'member');
    k1 = await insertKey(db, a.tenantId, m1.id, { quota_limit: 1000, quota_period: 'daily' });
    k2 = await insertKey(db, a.tenantId, m2.id);
    k3 = await insertKey(db, a.tenantId, a.admin.id);
    kb = await insertKey(db, b.tenantId, b.admin.id);
    const s = (tenantId: string, userId: string, apiKeyId: string) =>
      subjectOf({ tenantId, userId, apiKeyId });
    // as the key guard builds it from k1's row
    const s1 = subjectOf(
      { tenantId: a.tenantId, userId: m1.id, apiKeyId: k1 },
      { key: { tokenLimit: 1000, budgetUsd: null, period: 'daily' } },
    );
    for (let i = 0; i < 3; i++) await charge(s1, 'gpt-a', 100, 50, 10);
    const { reservation } = await inst.quota.admit(s1, {
      model: 'gpt-a',
      promptTokens: 10,
      wanted: 0,
    });
    await inst.quota.release(reservation, { provider: 'fake', status: 'upstream_error' });
    await charge(s(a.tenantId, m2.id, k2), 'gpt-b', 20, 30, 1_500_000);
    await charge(s(a.tenantId, m2.id, k2), 'gpt-b', 20, 30, 1_500_000);
    await charge(s(a.tenantId, a.admin.id, k3), 'gpt-a', 1, 1, 1);
    await charge(s(b.tenantId, b.admin.id, kb), 'gpt-a', 9, 9, 9);
    await inst.ledger.flush();
  });
  afterAll(() => inst.close());

  describe('GET /api/v1/usage', () => {
    it('admin: the whole tenant, grouped by key (failed requests count with 0 tokens)', async () => {
      const res = await request(inst.url)
        .get('/api/v1/usage?group_by=key')
        .set(auth(a.admin.token))
        .expect(200);
      expect(res.body.object).toBe('list');
      const byKey = Object.fromEntries(res.body.data.map((r: { api_key_id: string }) => [r.api_key_id, r]));
      expect(Object.keys(byKey).sort()).toEqual([k1, k2, k3].sort());
      expect(byKey[k1]).toMatchObject({
        requests: 4,
        prompt_tokens: 300,
        completion_tokens: 150,
        total_tokens: 450,
        cost_usd: 0.00003,
      });
      expect(byKey[k2]).toMatchObject({ requests: 2, total_tokens: 100, cost_usd: 3 });
      expect(byKey[k1].key_name).toMatch(/^key-/);
      expect(res.body.totals).toMatchObject({ requests: 7, total_tokens: 552, cost_usd: 3.000031 });
    });

    it('grouped by user, model and day (QUOTA_TIMEZONE)', async () => {
      const users = await request(inst.url)
        .get('/api/v1/usage?group_by=user')
        .set(auth(a.admin.token))
        .expect(200);
      expect(users.body.data.map((r: { user_id: string }) => r.user_id).sort()).toEqual(
        [m1.id, m2.id, a.admin.id].sort(),
      );
      const models = await request(inst.url)
        .get('/api/v1/usage?group_by=model')
        .set(auth(a.admin.token))
        .expect(200);
      expect(models.body.data).toEqual([
        expect.objectContaining({ model: 'gpt-b', requests: 2, cost_usd: 3 }),
        expect.objectContaining({ model: 'gpt-a', requests: 5, total_tokens: 452 }),
      ]);
      const days = await request(inst.url).get('/api/v1/usage').set(auth(a.admin.token)).expect(200);
      expect(days.body.group_by).toBe('day');
      expect(days.body.data).toEqual([
        expect.objectContaining({ day: new Date().toISOString().slice(0, 10), requests: 7 }),
      ]);
    });

    it('split by model, user or key per day: the rows add up to the totals; the rest folds into other', async () => {
      const day = new Date().toISOString().slice(0, 10);
      const models = await request(inst.url)
        .get('/api/v1/usage?group_by=day&split_by=model')
        .set(auth(a.admin.token))
        .expect(200);
      expect(models.body.split_by).toBe('model');
      expect(models.body.data).toEqual([
        expect.objectContaining({ day, model: 'gpt-b', requests: 2, total_tokens: 100, cost_usd: 3 }),
        expect.objectContaining({ day, model: 'gpt-a', requests: 5, total_tokens: 452 }),
      ]);
      const users = await request(inst.url)
        .get('/api/v1/usage')
        .query({ group_by: 'day', split_by: 'user', split_limit: 1 })
        .set(auth(a.admin.token))
        .expect(200);
      // m2 spent the most; m1 and the admin are folded into one `other` row of the day
      expect(users.body.data).toEqual([
        expect.objectContaining({ day, user_id: m2.id, requests: 2, cost_usd: 3 }),
        expect.objectContaining({ day, other: true, requests: 5, total_tokens: 452 }),
      ]);
      expect(users.body.data[1]).not.toHaveProperty('user_id');
      const keys = await request(inst.url)
        .get('/api/v1/usage?group_by=day&split_by=key')
        .set(auth(a.admin.token))
        .expect(200);
      expect(keys.body.data.map((r: { api_key_id: string }) => r.api_key_id)).toEqual([k2, k1, k3]);
      expect(keys.body.data[0].key_name).toMatch(/^key-/);
      for (const res of [models, users, keys]) {
        const sum = (f: string) =>
          res.body.data.reduce((n: number, r: Record<string, number>) => n + r[f], 0) as number;
        expect(sum('total_tokens')).toBe(552);
        expect(sum('requests')).toBe(7);
        expect(sum('cost_usd')).toBeCloseTo(3.000031, 6);
        expect(res.body.totals).toMatchObject({ requests: 7, total_tokens: 552, cost_usd: 3.000031 });
      }
      // a member: their own keys only, split as well
      const own = await request(inst.url)
        .get('/api/v1/usage?group_by=day&split_by=key')
        .set(auth(m1.token))
        .expect(200);
      expect(own.body.data.map((r: { api_key_id: string }) => r.api_key_id)).toEqual([k1]);
      const csv = await request(inst.url)
        .get('/api/v1/usage?group_by=day&split_by=model&format=csv')
        .set(auth(a.admin.token))
        .expect(200);
      expect(csv.text.split('\r\n').slice(0, 2)).toEqual([
        'day,model,other,requests,prompt_tokens,completion_tokens,total_tokens,cache_write_tokens,cache_read_tokens,cost_usd',
        `${day},gpt-b,,2,40,60,100,0,0,3`,
      ]);
    });

    it('a member sees only their own records; asking for another user is 403', async () => {
      const res = await request(inst.url).get('/api/v1/usage?group_by=key').set(auth(m1.token)).expect(200);
      expect(res.body.data.map((r: { api_key_id: string }) => r.api_key_id)).toEqual([k1]);
      expect(res.body.totals.requests).toBe(4);
      await request(inst.url).get(`/api/v1/usage?user_id=${m2.id}`).set(auth(m1.token)).expect(403);
    });

    it('the master key acts in the tenant named by X-Tenant-ID', async () => {
      const res = await request(inst.url)
        .get('/api/v1/usage?group_by=key')
        .set(masterIn(b.tenantId))
        .expect(200);
      expect(res.body.data.map((r: { api_key_id: string }) => r.api_key_id)).toEqual([kb]);
      await request(inst.url).get('/api/v1/usage').set(master).expect(400);
    });

    it('filters by key and by range', async () => {
      const res = await request(inst.url)
        .get(`/api/v1/usage?group_by=model&api_key_id=${k2}`)
        .set(auth(a.admin.token))
        .expect(200);
      expect(res.body.totals.requests).toBe(2);
      const past = await request(inst.url)
        .get('/api/v1/usage?from=2020-01-01&to=2020-02-01')
        .set(auth(a.admin.token))
        .expect(200);
      expect(past.body).toMatchObject({ data: [], totals: { requests: 0 } });
    });

    it.each([
      ['from=yesterday', /from must be an ISO 8601/],
      ['to=2026-13-45', /to must be an ISO 8601/],
      ['from=2026-02-01&to=2026-01-01', /from must be before to/],
      ['from=2020-01-01&to=2026-01-01', /at most 400 days/],
      ['group_by=week', /group_by must be one of/],
      ['user_id=not-a-uuid', /user_id must be a UUID/],
      ['limit=5', /limit should not exist/],
      ['split_by=tenant', /split_by must be one of/],
      ['group_by=model&split_by=key', /split_by needs group_by=day/],
      ['split_limit=3', /split_limit needs split_by/],
      ['split_by=model&split_limit=0', /split_limit must not be less than 1/],
      ['split_by=model&split_limit=101', /split_limit must not be greater than 100/],
      ['split_by=model&split_limit=two', /split_limit must be an integer/],
    ])('bad query %s: 400 in the envelope', async (qs, message) => {
      const res = await request(inst.url).get(`/api/v1/usage?${qs}`).set(auth(a.admin.token)).expect(400);
      expect(res.body.error.type).toBe('invalid_request_error');
      expect(res.body.error.message).toMatch(message);
      expect(JSON.stringify(res.body)).not.toMatch(/\bat .*\.(js|ts):\d+|SELECT/);
    });

    it('needs authentication', async () => {
      await request(inst.url).get('/api/v1/usage').expect(401);
    });
  });

  describe('GET /api/v1/api-keys/:id/usage', () => {
    it('totals in the range and the live counters of the current period', async () => {
      const res = await request(inst.url).get(`/api/v1/api-keys/${k1}/usage`).set(auth(m1.token)).expect(200);
      expect(res.body).toMatchObject({
        object: 'api_key.usage',
        api_key_id: k1,
        user_id: m1.id,
        requests: 4,
        total_tokens: 450,
        current_period: {
          period: 'daily',
          tokens: 450,
          quota_limit: 1000,
          spend_usd: 0.00003,
          max_budget: null,
        },
      });
      expect(res.body.current_period.period_end).toBe(
        new Date(
          Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1),
        ).toISOString(),
      );
    });

    it("another user's key (member) or another tenant's key: 404, same as a missing one", async () => {
      for (const [token, id] of [
        [m1.token, k2],
        [m1.token, k3],
        [a.admin.token, kb],
        [b.admin.token, k1],
        [a.admin.token, '00000000-0000-4000-8000-000000000000'],
      ]) {
        const res = await request(inst.url).get(`/api/v1/api-keys/${id}/usage`).set(auth(token)).expect(404);
        expect(res.body.error.code).toBe('api_key_not_found');
      }
      await request(inst.url).get(`/api/v1/api-keys/${k2}/usage`).set(auth(a.admin.token)).expect(200);
      await request(inst.url).get(`/api/v1/api-keys/${k1}/usage`).set(masterIn(a.tenantId)).expect(200);
    });

    it('bad id or date: 400', async () => {
      await request(inst.url).get('/api/v1/api-keys/nope/usage').set(auth(a.admin.token)).expect(400);
      await request(inst.url).get(`/api/v1/api-keys/${k1}/usage?from=x`).set(auth(a.admin.token)).expect(400);
    });
  });

  describe('quota fields on tenants (master key) and users (tenant admin)', () => {
    it('POST and PATCH a tenant with quota_limit, max_budget, quota_period', async () => {
      const created = await request(inst.url)
        .post('/api/v1/tenants')
        .set(master)
        .send({ name: `q-${Date.now()}`, quota_limit: 5000, max_budget: 12.5, quota_period: 'monthly' })
        .expect(201);
      expect(created.body).toMatchObject({ quota_limit: 5000, max_budget: 12.5, quota_period: 'monthly' });
      const id = created.body.id as string;
      const renamed = await request(inst.url)
        .patch(`/api/v1/tenants/${id}`)
        .set(master)
        .send({ name: `r-${Date.now()}` })
        .expect(200);
      expect(renamed.body).toMatchObject({ quota_limit: 5000, max_budget: 12.5, quota_period: 'monthly' });
      const cleared = await request(inst.url)
        .patch(`/api/v1/tenants/${id}`)
        .set(master)
        .send({ quota_limit: null, quota_period: 'daily' })
        .expect(200);
      expect(cleared.body).toMatchObject({ quota_limit: null, max_budget: 12.5, quota_period: 'daily' });
      const [row] = await sql(db, 'SELECT quota_limit, max_budget, quota_period FROM tenants WHERE id = $1', [
        id,
      ]);
      expect(row).toEqual({ quota_limit: null, max_budget: '12.500000', quota_period: 'daily' });
      expect(
        (await request(inst.url).get(`/api/v1/tenants/${id}`).set(master).expect(200)).body.quota_period,
      ).toBe('daily');
    });

    it('POST and PATCH a user with quota fields; a member may not', async () => {
      const email = `q-${Date.now()}@example.test`;
      const created = await request(inst.url)
        .post('/api/v1/users')
        .set(auth(a.admin.token))
        .send({ email, password: 'long-enough-pw', role: 'member', quota_limit: 100, quota_period: 'daily' })
        .expect(201);
      expect(created.body).toMatchObject({ quota_limit: 100, max_budget: null, quota_period: 'daily' });
      const patched = await request(inst.url)
        .patch(`/api/v1/users/${created.body.id}`)
        .set(auth(a.admin.token))
        .send({ max_budget: 0.5 })
        .expect(200);
      expect(patched.body).toMatchObject({ quota_limit: 100, max_budget: 0.5, quota_period: 'daily' });
      await request(inst.url)
        .patch(`/api/v1/users/${created.body.id}`)
        .set(auth(m1.token))
        .send({ quota_limit: 1e9 })
        .expect(403);
    });

    it.each([
      [{ quota_limit: -1 }, /quota_limit must not be less than 0/],
      [{ quota_limit: 1.5 }, /quota_limit must be an integer/],
      [{ quota_period: 'weekly' }, /quota_period must be one of/],
      [{ max_budget: 1.1234567 }, /max_budget must be a USD amount with at most 6 decimals/],
      [{ max_budget: 'lots' }, /^max_budget/],
    ])('bad quota field %j: 400', async (body, message) => {
      const res = await request(inst.url)
        .patch(`/api/v1/tenants/${a.tenantId}`)
        .set(master)
        .send(body)
        .expect(400);
      expect(res.body.error.message).toMatch(message);
    });
  });

  describe('GET /api/v1/usage/refusals', () => {
    it("counts the tenant's refusals per day and reason where they happen; upstream errors are not refusals", async () => {
      const tight = subjectOf(
        { tenantId: a.tenantId, userId: m1.id, apiKeyId: k1 },
        { key: { tokenLimit: 1000, budgetUsd: null, period: 'daily' } },
      );
      const refused = (s: QuotaSubject, model = 'gpt-a', promptTokens = 10) =>
        expect(inst.quota.admit(s, { model, promptTokens, wanted: 0 })).rejects.toMatchObject({
          status: expect.any(Number),
        });
      await refused(tight, 'gpt-a', 5000); // the key's daily token quota
      await refused(tight, 'gpt-a', 5000);
      await refused(
        subjectOf({ tenantId: a.tenantId, userId: m2.id, apiKeyId: k2 }, {}, { allowedModels: ['gpt-b'] }),
      );
      const budget = subjectOf(
        { tenantId: a.tenantId, userId: m2.id, apiKeyId: k2 },
        { user: { tokenLimit: null, budgetUsd: 1, period: 'none' } },
      );
      await expect(
        inst.quota.admit(budget, {
          model: 'gpt-b',
          promptTokens: 10,
          wanted: 0,
          pricing: { inputPerMillion: 1, outputPerMillion: 1 },
        }),
      ).rejects.toMatchObject({ status: 429 });
      // rpm: the second request of the minute (the first is released: no tokens in the ledger)
      const rpm = subjectOf({ tenantId: a.tenantId, userId: m2.id, apiKeyId: k2 }, {}, { rateLimitRpm: 1 });
      const first = await inst.quota.admit(rpm, { model: 'gpt-b', promptTokens: 1, wanted: 0 });
      await refused(rpm, 'gpt-b', 1);
      await inst.quota.release(first.reservation, { provider: 'fake', status: 'upstream_error' });
      // another tenant's refusal stays with it
      await refused(
        subjectOf({ tenantId: b.tenantId, userId: b.admin.id, apiKeyId: kb }, {}, { allowedModels: [] }),
      );

      // keys refused at authentication: revoked, expired (real keys, real HTTP)
      const mk = async () =>
        (
          await request(inst.url)
            .post('/api/v1/api-keys')
            .set(auth(a.admin.token))
            .send({ name: 'r' })
            .expect(201)
        ).body as { id: string; key: string };
      const revoked = await mk();
      await request(inst.url).delete(`/api/v1/api-keys/${revoked.id}`).set(auth(a.admin.token)).expect(200);
      expect(
        (await request(inst.url).get('/api/v1/me').set('X-API-Key', revoked.key).expect(401)).body.error.code,
      ).toBe('key_revoked');
      // the same refusal on the completion route's hot path (apps/gateway/src/hot-path.ts): counted too
      const chat = await request(inst.url)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${revoked.key}`)
        .send({ model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }] })
        .expect(401);
      expect(chat.body.error.code).toBe('key_revoked');
      const expired = await mk();
      await sql(db, `UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1`, [
        expired.id,
      ]);
      expect(
        (await request(inst.url).get('/api/v1/me').set('X-API-Key', expired.key).expect(401)).body.error.code,
      ).toBe('key_expired');
      // an unknown key is nobody's refusal
      await request(inst.url).get('/api/v1/me').set('X-API-Key', 'sk-not-a-key-at-all-0000').expect(401);

      // a tenant deleted meanwhile: its counts are left out, the batch still goes in
      inst.app.get(RefusalTally).count('00000000-0000-4000-8000-000000000000', 'rpm');
      await inst.app.get(RefusalFlusher).flush();
      expect(inst.app.get(RefusalTally).size).toBe(0);
      const day = new Date().toISOString().slice(0, 10);
      const res = await request(inst.url).get('/api/v1/usage/refusals').set(auth(a.admin.token)).expect(200);
      expect(res.body).toMatchObject({ object: 'list', to_day: day });
      expect(res.body.totals).toEqual({
        token_quota: 2,
        budget: 1,
        rpm: 1,
        tpm: 0,
        model_not_allowed: 1,
        key_expired: 1,
        key_revoked: 2,
        owner_disabled: 0,
      });
      expect(res.body.data).toEqual(
        expect.arrayContaining([
          { day, reason: 'token_quota', count: 2 },
          { day, reason: 'key_revoked', count: 2 },
        ]),
      );
      expect(res.body.data).toHaveLength(6);

      // a second flush adds to the day's rows (any number of instances write the same rows)
      await refused(tight, 'gpt-a', 5000);
      await inst.app.get(RefusalFlusher).flush();
      const again = await request(inst.url)
        .get('/api/v1/usage/refusals')
        .set(auth(a.admin.token))
        .expect(200);
      expect(again.body.totals.token_quota).toBe(3);

      const other = await request(inst.url)
        .get('/api/v1/usage/refusals')
        .set(masterIn(b.tenantId))
        .expect(200);
      expect(other.body.data).toEqual([{ day, reason: 'model_not_allowed', count: 1 }]);
      const past = await request(inst.url)
        .get('/api/v1/usage/refusals?from=2020-01-01&to=2020-02-01')
        .set(auth(a.admin.token))
        .expect(200);
      expect(past.body).toMatchObject({ from_day: '2020-01-01', to_day: '2020-01-31', data: [] });
    });

    it('members: 403; bad range: 400; no login: 401', async () => {
      const res = await request(inst.url).get('/api/v1/usage/refusals').set(auth(m1.token)).expect(403);
      expect(res.body.error.type).toBeDefined();
      const bad = await request(inst.url)
        .get('/api/v1/usage/refusals?from=2026-02-01&to=2026-01-01')
        .set(auth(a.admin.token))
        .expect(400);
      expect(bad.body.error.message).toMatch(/from must be before to/);
      await request(inst.url).get('/api/v1/usage/refusals?group_by=day').set(auth(a.admin.token)).expect(400);
      await request(inst.url).get('/api/v1/usage/refusals').expect(401);
    });
  });

  describe('GET /api/v1/usage/limits', () => {
    it("the tenant's limits and its current period against them: live counters and the ledger", async () => {
      const c = await createTenantWithAdmin(inst.url);
      await request(inst.url)
        .patch(`/api/v1/tenants/${c.tenantId}`)
        .set(master)
        .send({ quota_limit: 10000, max_budget: 5, quota_period: 'monthly', rate_limit_tpm: 5000 })
        .expect(200);
      const kc = await insertKey(db, c.tenantId, c.admin.id);
      const limits = { tokenLimit: 10000, budgetUsd: 5, period: 'monthly' as const };
      await charge(
        subjectOf({ tenantId: c.tenantId, userId: c.admin.id, apiKeyId: kc }, { tenant: limits }),
        'gpt-a',
        100,
        50,
        250_000,
      );
      await inst.ledger.flush();

      const now = new Date();
      const expected = {
        object: 'tenant.limits',
        tenant_id: c.tenantId,
        name: c.name,
        current_period: {
          period: 'monthly',
          period_start: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString(),
          period_end: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString(),
          tokens: 150,
          quota_limit: 10000,
          spend_usd: 0.25,
          max_budget: 5,
        },
        rate_limit_tpm: 5000,
        ledger: { requests: 1, total_tokens: 150, cost_usd: 0.25 },
      };
      const res = await request(inst.url).get('/api/v1/usage/limits').set(auth(c.admin.token)).expect(200);
      expect(res.body).toEqual(expected);
      const byMaster = await request(inst.url)
        .get('/api/v1/usage/limits')
        .set(masterIn(c.tenantId))
        .expect(200);
      expect(byMaster.body).toEqual(expected);
      // another tenant's admin sees their own tenant (no limits: unlimited, no reset period)
      const own = await request(inst.url).get('/api/v1/usage/limits').set(auth(a.admin.token)).expect(200);
      expect(own.body).toMatchObject({
        tenant_id: a.tenantId,
        rate_limit_tpm: null,
        current_period: {
          period: 'none',
          period_start: null,
          period_end: null,
          quota_limit: null,
          max_budget: null,
        },
      });
    });

    it('members: 403; the master key without X-Tenant-ID: 400; no login: 401', async () => {
      await request(inst.url).get('/api/v1/usage/limits').set(auth(m1.token)).expect(403);
      await request(inst.url).get('/api/v1/usage/limits').set(master).expect(400);
      await request(inst.url).get('/api/v1/usage/limits').expect(401);
    });
  });

  it('refusal counts still in memory are written when the gateway shuts down', async () => {
    const db2 = await createDatabase();
    const other = await startInstance({ databaseUrl: db2, env: { LEDGER_FLUSH_MS: '600000' } });
    try {
      const c = await createTenantWithAdmin(other.url);
      const key = await insertKey(db2, c.tenantId, c.admin.id);
      const s = subjectOf(
        { tenantId: c.tenantId, userId: c.admin.id, apiKeyId: key },
        {},
        { allowedModels: [] },
      );
      for (let i = 0; i < 3; i++)
        await expect(
          other.quota.admit(s, { model: 'gpt-a', promptTokens: 1, wanted: 0 }),
        ).rejects.toMatchObject({
          status: 403,
        });
      expect(await sql(db2, 'SELECT count(*)::int AS n FROM refusal_counts')).toEqual([{ n: 0 }]);
    } finally {
      await other.close();
    }
    expect(await sql(db2, 'SELECT reason, count::int AS count FROM refusal_counts')).toEqual([
      { reason: 'model_not_allowed', count: 3 },
    ]);
  });

  it('Swagger documents the usage routes', async () => {
    const doc = (await request(inst.url).get('/docs-json').expect(200)).body;
    expect(doc.paths['/api/v1/usage'].get.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['from', 'to', 'group_by', 'user_id', 'api_key_id']),
    );
    expect(doc.paths['/api/v1/api-keys/{id}/usage']).toBeDefined();
    for (const path of ['/api/v1/usage/refusals', '/api/v1/usage/limits']) {
      expect(doc.paths[path].get.summary).toMatch(/\(admins\)$/);
      expect(doc.paths[path].get.responses['200'].content['application/json'].schema.$ref).toBeDefined();
    }
    expect(doc.components.schemas.TenantLimitsResponse.properties.current_period.example).toMatchObject({
      period: 'monthly',
    });
    expect(doc.components.schemas.UpdateTenantDto.properties).toHaveProperty('quota_limit');
  });
});
