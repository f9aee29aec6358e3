import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, masterHeaders, TenantSession } from '../harness/factories';

/** X-Tenant-ID names a tenant by id or by (case-insensitive) name, as the CLI's --tenant does. */
describe('X-Tenant-ID by id or name', () => {
  let t: TestApp;
  let a: TenantSession;
  let b: TenantSession;

  beforeAll(async () => {
    t = await createTestApp();
    a = await createTenantWithAdmin(t.url, 'Acme-Corp');
    b = await createTenantWithAdmin(t.url, 'globex');
  });
  afterAll(() => t.close());

  it('the master key acts in a tenant named by its name, in any case, or by its id', async () => {
    for (const ref of ['Acme-Corp', 'acme-corp', a.tenantId]) {
      const res = await request(t.url)
        .get('/api/v1/users')
        .set(masterHeaders)
        .set('X-Tenant-ID', ref)
        .expect(200);
      expect(res.body.data.map((u: { email: string }) => u.email)).toEqual([a.admin.email]);
    }
    const key = await request(t.url)
      .post('/api/v1/api-keys')
      .set(masterHeaders)
      .set('X-Tenant-ID', 'globex')
      .send({ name: 'by-name' })
      .expect(201);
    expect(key.body.tenant_id).toBe(b.tenantId);
  });

  it('unknown or disabled names are 404, malformed values 400', async () => {
    const unknown = await request(t.url)
      .get('/api/v1/users')
      .set(masterHeaders)
      .set('X-Tenant-ID', 'nope')
      .expect(404);
    expect(unknown.body.error.code).toBe('tenant_not_found');
    const off = await createTenantWithAdmin(t.url, 'gone-co');
    await request(t.url)
      .patch(`/api/v1/tenants/${off.tenantId}`)
      .set(masterHeaders)
      .send({ status: 'disabled' })
      .expect(200);
    await request(t.url).get('/api/v1/users').set(masterHeaders).set('X-Tenant-ID', 'gone-co').expect(404);
    for (const bad of ['-leading-dash', 'a'.repeat(101), "x'; DROP TABLE tenants;--"]) {
      const res = await request(t.url)
        .get('/api/v1/users')
        .set(masterHeaders)
        .set('X-Tenant-ID', bad)
        .expect(400);
      expect(res.body.error.code).toBe('invalid_tenant_id');
    }
  });

  it("a JWT may name its own tenant by name; another tenant's name or id is 403 either way", async () => {
    await request(t.url)
      .get('/api/v1/users')
      .set(auth(a.admin.token))
      .set('X-Tenant-ID', 'ACME-CORP')
      .expect(200);
    for (const other of ['globex', b.tenantId, 'no-such-tenant']) {
      const res = await request(t.url)
        .get('/api/v1/users')
        .set(auth(a.admin.token))
        .set('X-Tenant-ID', other)
        .expect(403);
      expect(res.body.error.code).toBe('tenant_mismatch');
    }
  });
});
