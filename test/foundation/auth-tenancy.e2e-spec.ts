import request from 'supertest';
import { JwtService } from '@nestjs/jwt';
import { createTestApp, JWT_SECRET, TestApp } from '../harness/app';
import {
  auth,
  createTenantWithAdmin,
  createUser,
  masterHeaders,
  masterIn,
  TenantSession,
} from '../harness/factories';

describe('tenancy and admin auth (real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let b: TenantSession;

  beforeAll(async () => {
    t = await createTestApp();
    a = await createTenantWithAdmin(t.url);
    b = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  describe('login', () => {
    it('right password: 200 with a JWT carrying tenant, user and role', async () => {
      const res = await request(t.url)
        .post('/auth/login')
        .send({ email: a.admin.email, password: a.admin.password })
        .expect(200);
      expect(res.body.token_type).toBe('Bearer');
      const claims = new JwtService({ secret: JWT_SECRET }).verify(res.body.access_token);
      expect(claims).toMatchObject({ sub: a.admin.id, tid: a.tenantId, role: 'admin' });
      expect(JSON.stringify(res.body)).not.toContain('password');
    });

    it('wrong password and unknown email: both 401 with the same message', async () => {
      const wrong = await request(t.url)
        .post('/auth/login')
        .send({ email: a.admin.email, password: 'nope-nope-nope' })
        .expect(401);
      const unknown = await request(t.url)
        .post('/auth/login')
        .send({ email: 'ghost@example.test', password: 'nope-nope-nope' })
        .expect(401);
      expect(wrong.body.error.message).toBe(unknown.body.error.message);
      expect(wrong.body.error.code).toBe(unknown.body.error.code);
      expect(wrong.body.error.type).toBe('authentication_error');
    });

    it('disabled user: 401 at login, and their existing JWT stops working', async () => {
      const m = await createUser(t.url, a.tenantId, 'member');
      await request(t.url)
        .patch(`/api/v1/users/${m.id}`)
        .set(auth(a.admin.token))
        .send({ status: 'disabled' })
        .expect(200);
      await request(t.url).post('/auth/login').send({ email: m.email, password: m.password }).expect(401);
      await request(t.url).get('/api/v1/users').set(auth(m.token)).expect(401);
    });

    it('disabled tenant: its users cannot log in', async () => {
      const c = await createTenantWithAdmin(t.url);
      await request(t.url)
        .patch(`/api/v1/tenants/${c.tenantId}`)
        .set(masterHeaders)
        .send({ status: 'disabled' })
        .expect(200);
      await request(t.url)
        .post('/auth/login')
        .send({ email: c.admin.email, password: c.admin.password })
        .expect(401);
    });

    it('expired JWT: 401 token_expired', async () => {
      const expired = new JwtService({ secret: JWT_SECRET }).sign({
        sub: a.admin.id,
        tid: a.tenantId,
        role: 'admin',
        exp: Math.floor(Date.now() / 1000) - 10,
      });
      const res = await request(t.url).get('/api/v1/users').set(auth(expired)).expect(401);
      expect(res.body.error.code).toBe('token_expired');
    });

    it('a JWT signed with another secret or alg none: 401', async () => {
      const forged = new JwtService({ secret: 'another-secret-another-secret-another' }).sign({
        sub: a.admin.id,
        tid: a.tenantId,
        role: 'admin',
      });
      await request(t.url).get('/api/v1/users').set(auth(forged)).expect(401);
      const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: a.admin.id, tid: a.tenantId, role: 'admin' })).toString('base64url')}.`;
      await request(t.url).get('/api/v1/users').set(auth(none)).expect(401);
    });
  });

  describe('isolation', () => {
    it("an admin of A never reads, lists, updates or deletes B's users (404)", async () => {
      const bUser = await createUser(t.url, b.tenantId, 'member');
      const list = await request(t.url).get('/api/v1/users').set(auth(a.admin.token)).expect(200);
      expect(list.body.data.map((u: { id: string }) => u.id)).not.toContain(bUser.id);
      expect(list.body.data.every((u: { tenant_id: string }) => u.tenant_id === a.tenantId)).toBe(true);
      for (const r of [
        request(t.url).get(`/api/v1/users/${bUser.id}`),
        request(t.url).patch(`/api/v1/users/${bUser.id}`).send({ name: 'pwned' }),
        request(t.url).delete(`/api/v1/users/${bUser.id}`),
      ]) {
        const res = await r.set(auth(a.admin.token)).expect(404);
        expect(JSON.stringify(res.body)).not.toContain(bUser.email);
      }
      const still = await request(t.url)
        .get(`/api/v1/users/${bUser.id}`)
        .set(auth(b.admin.token))
        .expect(200);
      expect(still.body.name).toBeNull();
    });

    it('a member managing users gets 403', async () => {
      const m = await createUser(t.url, a.tenantId, 'member');
      await request(t.url).get('/api/v1/users').set(auth(m.token)).expect(403);
      await request(t.url)
        .post('/api/v1/users')
        .set(auth(m.token))
        .send({ email: 'x@example.test', password: 'longenough', role: 'admin' })
        .expect(403);
    });

    it('the master key on a tenant-scoped route without X-Tenant-ID: 400 with a clear message', async () => {
      const res = await request(t.url).get('/api/v1/users').set(masterHeaders).expect(400);
      expect(res.body.error.message).toMatch(/X-Tenant-ID/);
      await request(t.url).get('/api/v1/users').set(masterIn(a.tenantId)).expect(200);
    });

    it('a JWT with an X-Tenant-ID of another tenant: 403', async () => {
      await request(t.url)
        .get('/api/v1/users')
        .set(auth(a.admin.token))
        .set('X-Tenant-ID', b.tenantId)
        .expect(403);
    });

    it('tenants are managed with the master key only', async () => {
      await request(t.url).get('/api/v1/tenants').set(auth(a.admin.token)).expect(403);
      const res = await request(t.url).get('/api/v1/tenants?limit=100').set(masterHeaders).expect(200);
      expect(res.body.data.map((x: { id: string }) => x.id)).toEqual(
        expect.arrayContaining([a.tenantId, b.tenantId]),
      );
    });
  });

  describe('bad input, in the envelope, never a stack trace', () => {
    const noLeak = (body: unknown) => {
      const s = JSON.stringify(body);
      expect(s).not.toMatch(/\bat .*\.(js|ts):\d+/);
      expect(s).not.toMatch(/SELECT|INSERT|QueryFailedError/i);
    };
    it('malformed JSON: 400', async () => {
      const res = await request(t.url)
        .post('/auth/login')
        .set('content-type', 'application/json')
        .send('{"email": ')
        .expect(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
      noLeak(res.body);
    });
    it('unknown field: 400', async () => {
      const res = await request(t.url)
        .post('/auth/login')
        .send({ email: 'a@b.c', password: 'x', admin: true })
        .expect(400);
      expect(res.body.error.message).toMatch(/admin should not exist/);
    });
    it('body over the limit: 413', async () => {
      const res = await request(t.url)
        .post('/auth/login')
        .send({ email: 'a'.repeat(1024 * 1024 + 10), password: 'x' })
        .expect(413);
      expect(res.body.error.type).toBe('invalid_request_error');
    });
    it('unknown route: 404', async () => {
      const res = await request(t.url).get('/api/v1/nothing-here').expect(404);
      expect(res.body.error.code).toBe('not_found');
    });
    it('non-UUID id: 400, not a SQL error', async () => {
      const res = await request(t.url).get("/api/v1/users/1' OR '1'='1").set(auth(a.admin.token)).expect(400);
      noLeak(res.body);
    });
    it('wrong types: 400', async () => {
      const res = await request(t.url)
        .post('/auth/login')
        .send({ email: 42, password: ['x'] })
        .expect(400);
      noLeak(res.body);
    });
    it('carries a request id', async () => {
      const res = await request(t.url).get('/health/live').set('X-Request-Id', 'abc-123').expect(200);
      expect(res.headers['x-request-id']).toBe('abc-123');
    });
  });

  it('health: ready checks PostgreSQL', async () => {
    const res = await request(t.url).get('/health/ready').expect(200);
    expect(res.body.info.postgres.status).toBe('up');
  });
});
