import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp, MASTER_KEY, TestApp } from '../harness/app';
import {
  auth,
  createTenantWithAdmin,
  createUser,
  masterHeaders,
  masterIn,
  TenantSession,
} from '../harness/factories';

interface Entry {
  id: string;
  tenant_id: string | null;
  actor_type: string;
  actor_id: string | null;
  actor_label: string | null;
  action: string;
  target_type: string;
  target_id: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  request_id: string | null;
  ip: string | null;
  created_at: string;
}

/**
 * The audit trail through the real HTTP API on real PostgreSQL: every admin mutation,
 * login and password change leaves one entry with actor, before/after and request id,
 * never a secret; admins read their tenant only, the master key all; cursor pages;
 * the table refuses UPDATE and DELETE; a failed change leaves no entry.
 */
describe('audit log (real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let b: TenantSession;
  const secrets: string[] = [MASTER_KEY];

  const entries = async (token: string, query: Record<string, string> = {}) =>
    (await request(t.url).get('/api/v1/audit-log').query(query).set(auth(token)).expect(200)).body as {
      data: Entry[];
      next_cursor: string | null;
    };

  beforeAll(async () => {
    t = await createTestApp();
    a = await createTenantWithAdmin(t.url);
    b = await createTenantWithAdmin(t.url);
    secrets.push(a.admin.password, a.admin.token, b.admin.password, b.admin.token);
  });
  afterAll(() => t.close());

  it('records a key created, edited, regenerated and revoked, with before/after and no secret', async () => {
    const created = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .set('X-Request-Id', 'req-audit-create-1')
      .send({ name: 'ci', quota_limit: 1000 })
      .expect(201);
    const keyId = created.body.id as string;
    secrets.push(created.body.key);
    await request(t.url)
      .patch(`/api/v1/api-keys/${keyId}`)
      .set(auth(a.admin.token))
      .send({ quota_limit: 5000, rate_limit_rpm: 60, name: 'ci-2' })
      .expect(200);
    const regen = await request(t.url)
      .post(`/api/v1/api-keys/${keyId}/regenerate`)
      .set(auth(a.admin.token))
      .send({ grace_period_seconds: 60 })
      .expect(200);
    secrets.push(regen.body.key);
    await request(t.url).delete(`/api/v1/api-keys/${keyId}`).set(auth(a.admin.token)).expect(200);
    await request(t.url).delete(`/api/v1/api-keys/${keyId}`).set(auth(a.admin.token)).expect(200); // no-op

    const { data } = await entries(a.admin.token, { target_id: keyId });
    expect(data.map((e) => e.action)).toEqual([
      'api_key.revoke',
      'api_key.regenerate',
      'api_key.update',
      'api_key.create',
    ]);
    const [revoke, regenerate, update, create] = data;
    expect(create).toMatchObject({
      tenant_id: a.tenantId,
      actor_type: 'user',
      actor_id: a.admin.id,
      actor_label: a.admin.email,
      target_type: 'api_key',
      target_label: 'ci',
      request_id: 'req-audit-create-1',
      ip: '127.0.0.1',
      before: null,
      after: { name: 'ci', quota_limit: 1000, key_prefix: created.body.key_prefix, imported: false },
    });
    expect(update.before).toEqual({ name: 'ci', quota_limit: 1000, rate_limit_rpm: null });
    expect(update.after).toEqual({ name: 'ci-2', quota_limit: 5000, rate_limit_rpm: 60 });
    expect(regenerate.before).toMatchObject({ key_prefix: created.body.key_prefix });
    expect(regenerate.after).toMatchObject({ key_prefix: regen.body.key_prefix });
    expect(revoke.before).toMatchObject({ revoked_at: null, status: 'active' });
    expect(revoke.after).toMatchObject({ status: 'revoked' });
    expect(typeof revoke.request_id).toBe('string');

    // Nothing secret anywhere in the trail, nor any hash.
    const raw: { row: string }[] = await t.app
      .get(DataSource)
      .query(`SELECT row_to_json(a)::text AS row FROM audit_log a`);
    const all = raw.map((r) => r.row).join('\n');
    for (const s of secrets) expect(all).not.toContain(s);
    expect(all).not.toMatch(/\$2[aby]\$|key_hash|lookup_hash|password_hash|"key":/);
  });

  it('records tenants, users, password changes and logins; the master key is the actor when it acts', async () => {
    const tenant = await request(t.url).post('/api/v1/tenants').set(masterHeaders).send({ name: 'audited' });
    await request(t.url)
      .patch(`/api/v1/tenants/${tenant.body.id}`)
      .set(masterHeaders)
      .send({ status: 'disabled', quota_limit: 10 })
      .expect(200);
    const member = await createUser(t.url, a.tenantId, 'member'); // master key + X-Tenant-ID, then a login
    secrets.push(member.password, member.token);
    await request(t.url)
      .patch(`/api/v1/users/${member.id}`)
      .set(auth(a.admin.token))
      .send({ password: 'a-new-password-123', role: 'admin' })
      .expect(200);
    secrets.push('a-new-password-123');
    await request(t.url)
      .post('/auth/login')
      .send({ email: member.email, password: 'wrong-password-1' })
      .expect(401);
    await request(t.url)
      .post('/auth/login')
      .send({ email: 'nobody@nowhere.test', password: 'wrong-password-2' })
      .expect(401);
    secrets.push('wrong-password-1', 'wrong-password-2');
    await request(t.url).delete(`/api/v1/users/${member.id}`).set(auth(a.admin.token)).expect(204);

    const master = (await request(t.url).get('/api/v1/audit-log').set(masterHeaders).expect(200)).body
      .data as Entry[];
    const tenantEntries = master.filter((e) => e.target_id === tenant.body.id);
    expect(tenantEntries.map((e) => e.action)).toEqual(['tenant.update', 'tenant.create']);
    expect(tenantEntries[0]).toMatchObject({
      actor_type: 'master',
      actor_label: 'master key',
      actor_id: null,
      before: { status: 'active', quota_limit: null },
      after: { status: 'disabled', quota_limit: 10 },
    });

    const mine = (await entries(a.admin.token, { target_id: member.id })).data;
    expect(mine.map((e) => e.action)).toEqual([
      'user.delete',
      'auth.login_failed',
      'user.password_change',
      'user.update',
      'auth.login',
      'user.create',
    ]);
    expect(mine.find((e) => e.action === 'user.create')).toMatchObject({ actor_type: 'master' });
    expect(mine.find((e) => e.action === 'user.update')).toMatchObject({
      before: { role: 'member' },
      after: { role: 'admin' },
      actor_id: a.admin.id,
    });
    expect(mine.find((e) => e.action === 'user.password_change')).toMatchObject({
      before: null,
      after: null,
    });
    expect(mine.find((e) => e.action === 'auth.login_failed')).toMatchObject({
      actor_type: 'anonymous',
      actor_label: member.email,
      after: { reason: 'invalid_credentials' },
    });
    expect(mine.find((e) => e.action === 'auth.login')).toMatchObject({
      actor_type: 'user',
      actor_id: member.id,
    });
    // A failed login with an unknown email belongs to no tenant: only the master key sees it.
    expect(
      master.find((e) => e.action === 'auth.login_failed' && e.actor_label === 'nobody@nowhere.test'),
    ).toMatchObject({ tenant_id: null, target_id: null });

    const raw: { row: string }[] = await t.app
      .get(DataSource)
      .query(`SELECT row_to_json(a)::text AS row FROM audit_log a`);
    const all = raw.map((r) => r.row).join('\n');
    for (const s of secrets) expect(all).not.toContain(s);
    expect(all).not.toMatch(/\$2[aby]\$|password_hash/);
  });

  it('admins see their tenant only; members get 403; the master key all, or one tenant', async () => {
    await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(b.admin.token))
      .send({ name: 'b-key' })
      .expect(201);
    const aView = (await entries(a.admin.token, { limit: '200' })).data;
    expect(aView.length).toBeGreaterThan(0);
    expect(aView.every((e) => e.tenant_id === a.tenantId)).toBe(true);
    await request(t.url)
      .get('/api/v1/audit-log')
      .query({ tenant_id: b.tenantId })
      .set(auth(a.admin.token))
      .expect(403);
    const member = await createUser(t.url, a.tenantId, 'member');
    const forbidden = await request(t.url).get('/api/v1/audit-log').set(auth(member.token)).expect(403);
    expect(forbidden.body.error.code).toBe('role_not_allowed');

    const bOnly = (
      await request(t.url)
        .get('/api/v1/audit-log')
        .set(masterIn(b.tenantId))
        .query({ limit: 200 })
        .expect(200)
    ).body.data as Entry[];
    expect(bOnly.length).toBeGreaterThan(0);
    expect(bOnly.every((e) => e.tenant_id === b.tenantId)).toBe(true);
    const byQuery = (
      await request(t.url)
        .get('/api/v1/audit-log')
        .set(masterHeaders)
        .query({ tenant_id: b.tenantId, action: 'api_key.*' })
        .expect(200)
    ).body.data as Entry[];
    expect(byQuery.map((e) => e.action)).toEqual(['api_key.create']);
  });

  it('pages with a cursor, newest first, without gaps or repeats', async () => {
    const all: Entry[] = [];
    let cursor: string | null = null;
    do {
      const page = await entries(a.admin.token, { limit: '3', ...(cursor ? { cursor } : {}) });
      expect(page.data.length).toBeLessThanOrEqual(3);
      all.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor);
    const ids = all.map((e) => BigInt(e.id));
    expect(ids).toEqual([...ids].sort((x, y) => (x > y ? -1 : x < y ? 1 : 0)));
    expect(new Set(ids).size).toBe(ids.length);
    const single = await entries(a.admin.token, { limit: '200' });
    expect(single.data.map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(single.next_cursor).toBeNull();

    const range = await entries(a.admin.token, { from: '2000-01-01', to: '2000-01-02' });
    expect(range.data).toEqual([]);
  });

  it('answers bad filters with 400, and has no route to change or delete an entry', async () => {
    for (const query of [
      { cursor: 'abc' },
      { limit: '0' },
      { action: 'DROP TABLE' },
      { from: 'yesterday' },
    ]) {
      const res = await request(t.url)
        .get('/api/v1/audit-log')
        .query(query)
        .set(auth(a.admin.token))
        .expect(400);
      expect(res.body.error.type).toBe('invalid_request_error');
    }
    await request(t.url).delete('/api/v1/audit-log').set(masterHeaders).expect(404);
    await request(t.url).patch('/api/v1/audit-log/1').set(masterHeaders).send({}).expect(404);
  });

  it('is append-only in the database, and a failed change leaves no entry', async () => {
    const ds = t.app.get(DataSource);
    await expect(ds.query(`UPDATE audit_log SET action = 'x'`)).rejects.toThrow(/append-only/);
    await expect(ds.query(`DELETE FROM audit_log`)).rejects.toThrow(/append-only/);

    const [{ n: before }] = await ds.query(`SELECT count(*)::int AS n FROM audit_log`);
    // Taken names and unknown owners are refused before anything is written.
    await request(t.url).post('/api/v1/tenants').set(masterHeaders).send({ name: 'audited' }).expect(409);
    await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'x', user_id: '00000000-0000-4000-8000-000000000000' })
      .expect(404);
    const [{ n: after }] = await ds.query(`SELECT count(*)::int AS n FROM audit_log`);
    expect(after).toBe(before);
  });

  it('writes the change and its entry in one transaction: no entry, no change', async () => {
    const ds = t.app.get(DataSource);
    const key = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'atomic', quota_limit: 100 })
      .expect(201);
    // Make the audit insert of this one action fail (in this test's own database).
    await ds.query(
      `ALTER TABLE audit_log ADD CONSTRAINT test_refuse CHECK (action <> 'api_key.update') NOT VALID`,
    );
    try {
      const res = await request(t.url)
        .patch(`/api/v1/api-keys/${key.body.id}`)
        .set(auth(a.admin.token))
        .send({ quota_limit: 999 })
        .expect(500);
      expect(JSON.stringify(res.body)).not.toMatch(/audit_log|test_refuse/);
    } finally {
      await ds.query(`ALTER TABLE audit_log DROP CONSTRAINT test_refuse`);
    }
    const now = await request(t.url)
      .get(`/api/v1/api-keys/${key.body.id}`)
      .set(auth(a.admin.token))
      .expect(200);
    expect(now.body.quota_limit).toBe(100);
  });
});
