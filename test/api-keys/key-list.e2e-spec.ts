import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, TenantSession, UserSession } from '../harness/factories';

interface Row {
  name: string;
  status: string;
  exhausted: string[];
  period: { tokens: number; spend: number; resets_at: string | null };
}

/** GET /api/v1/api-keys: search, status and owner filters, sort, the exhausted state; 400 on bad values. */
describe('key list: search, filters, sort (real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let other: TenantSession;
  let dana: UserSession;
  const list = (token: string, query: Record<string, string | number>) =>
    request(t.url).get('/api/v1/api-keys').query(query).set(auth(token));
  const names = (body: { data: Row[] }) => body.data.map((k) => k.name);

  beforeAll(async () => {
    t = await createTestApp({ env: { LEDGER_FLUSH_MS: '50' } });
    a = await createTenantWithAdmin(t.url, 'list-corp');
    other = await createTenantWithAdmin(t.url, 'list-other');
    dana = await createUser(t.url, a.tenantId, 'member');
    const mk = (token: string, body: Record<string, unknown>) =>
      request(t.url).post('/api/v1/api-keys').set(auth(token)).send(body).expect(201);
    await mk(a.admin.token, { name: 'Billing service', max_budget: 0 });
    await mk(a.admin.token, { name: 'billing-batch', quota_limit: 10, quota_period: 'monthly' });
    const old = await mk(a.admin.token, { name: 'Old CI' });
    await request(t.url).delete(`/api/v1/api-keys/${old.body.id}`).set(auth(a.admin.token)).expect(200);
    await mk(dana.token, { name: 'dana-laptop' });
    await mk(other.admin.token, { name: 'Billing elsewhere' });
    // A key that expired an hour ago (the API refuses a past expiry only in the page's own check).
    await t.app
      .get(DataSource)
      .query(
        `INSERT INTO api_keys (tenant_id, user_id, name, key_hash, key_prefix, expires_at) VALUES ($1, $2, 'Expired one', 'x', 'sk-expired00', now() - interval '1 hour')`,
        [a.tenantId, a.admin.id],
      );
  });

  afterAll(() => t?.close());

  it('searches name, owner email and prefix, in the tenant only', async () => {
    const byName = await list(a.admin.token, { q: 'BILLING' }).expect(200);
    expect(names(byName.body).sort()).toEqual(['Billing service', 'billing-batch']);
    const byOwner = await list(a.admin.token, { q: dana.email.split('@')[0].toUpperCase() }).expect(200);
    expect(names(byOwner.body)).toEqual(['dana-laptop']);
    const byPrefix = await list(a.admin.token, { q: 'sk-expired' }).expect(200);
    expect(names(byPrefix.body)).toEqual(['Expired one']);
    // LIKE wildcards are text.
    expect((await list(a.admin.token, { q: '%' }).expect(200)).body.total).toBe(0);
  });

  it('filters by status and owner; revoked keys apart', async () => {
    const current = await list(a.admin.token, { status: 'current' }).expect(200);
    expect(names(current.body)).not.toContain('Old CI');
    expect(current.body.total).toBe(4);
    expect(names((await list(a.admin.token, { status: 'revoked' }).expect(200)).body)).toEqual(['Old CI']);
    expect(names((await list(a.admin.token, { status: 'expired' }).expect(200)).body)).toEqual([
      'Expired one',
    ]);
    const ex = await list(a.admin.token, { status: 'exhausted', sort: 'name', order: 'asc' }).expect(200);
    const rows = ex.body.data as Row[];
    expect(rows.map((k) => [k.name, k.exhausted])).toEqual([
      ['Billing service', ['budget']],
      ['billing-batch', ['quota']], // 10 tokens: below the smallest grant
      ['Expired one', ['expired']],
    ]);
    expect(rows[1].period.resets_at).toMatch(/^\d{4}-\d\d-01T00:00:00/);
    expect(rows[0].period.resets_at).toBeNull();
    const mine = await list(a.admin.token, { owner_id: dana.id }).expect(200);
    expect(names(mine.body)).toEqual(['dana-laptop']);
    // A member sees only their own, whatever owner they name.
    expect((await list(dana.token, { owner_id: a.admin.id }).expect(200)).body.total).toBe(0);
    expect(names((await list(dana.token, {}).expect(200)).body)).toEqual(['dana-laptop']);
  });

  it('sorts by name, usage and spend', async () => {
    const asc = await list(a.admin.token, { sort: 'name', order: 'asc', status: 'all' }).expect(200);
    expect(names(asc.body)).toEqual([
      'Billing service',
      'billing-batch',
      'dana-laptop',
      'Expired one',
      'Old CI',
    ]);
    await list(a.admin.token, { sort: 'usage' }).expect(200);
    await list(a.admin.token, { sort: 'spend', order: 'asc' }).expect(200);
  });

  it.each([
    [{ status: 'gone' }, 'status'],
    [{ sort: 'price' }, 'sort'],
    [{ order: 'up' }, 'order'],
    [{ owner_id: 'nope' }, 'owner_id'],
    [{ q: 'x'.repeat(101) }, 'q'],
    [{ q: 'a\u0000b' }, 'q'],
    [{ limit: 0 }, 'limit'],
  ])('400 on %j', async (query, field) => {
    const res = await list(a.admin.token, query as Record<string, string>).expect(400);
    expect(res.body.error.type).toBe('invalid_request_error');
    expect(res.body.error.message).toContain(field);
  });
});
