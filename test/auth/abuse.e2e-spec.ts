import { Agent, get as httpGet } from 'node:http';
import request from 'supertest';
import * as bcrypt from 'bcrypt';
import { DataSource } from 'typeorm';
import { checksum, generateKey, KeyAuthService } from '@app/api-keys';
import { BcryptGate } from '@app/auth';
import { createTestApp, describeWithRedis, TestApp } from '../harness/app';
import {
  auth,
  badChecksum,
  createTenantWithAdmin,
  createUser,
  login,
  masterIn,
  TenantSession,
} from '../harness/factories';

const me = (t: TestApp, key: string, address?: string) => {
  const r = request(t.url).get('/api/v1/me').set('X-API-Key', key);
  return address ? r.set('X-Forwarded-For', address) : r;
};

/** A current-format key with a valid checksum and the given 12-character prefix. */
function keyWithPrefix(prefix: string): string {
  const head = prefix + generateKey().slice(12, 35);
  return head + checksum(head);
}

/** Runs `tasks` with at most `width` in flight. */
async function pool<T>(n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await task(i);
      }
    }),
  );
  return out;
}

/** A current-format key whose checksum fails: refused offline, never counted. */
const typo = (): string => badChecksum(generateKey());

const statuses = (rs: { status: number }[]) =>
  rs.reduce<Record<number, number>>((m, r) => ({ ...m, [r.status]: (m[r.status] ?? 0) + 1 }), {});

async function createKey(t: TestApp, token: string, body: Record<string, unknown> = {}) {
  const res = await request(t.url)
    .post('/api/v1/api-keys')
    .set(auth(token))
    .send({ name: 'k', ...body })
    .expect(201);
  return res.body as { id: string; key: string; key_prefix: string; expires_at: string | null };
}

describe('key limiter: only what costs is throttled, never a valid key for others', () => {
  let t: TestApp;
  let s: TenantSession;
  beforeAll(async () => {
    t = await createTestApp({ env: { AUTH_FAILURE_LIMIT: '10', LEGACY_PREFIX_FAILURE_LIMIT: '20' } });
    s = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  it('behind one shared address: 500 bad keys, a revoked key retried, then a valid key from the same address is served', async () => {
    const valid = await createKey(t, s.admin.token);
    const revoked = await createKey(t, s.admin.token);
    await request(t.url).delete(`/api/v1/api-keys/${revoked.id}`).set(auth(s.admin.token)).expect(200);
    // Valid checksums: each one costs a database lookup (bad checksums cost nothing and are not counted).
    const bad = await pool(500, 25, () => me(t, generateKey()));
    expect(statuses(bad)).toEqual({ 401: 500 });
    for (let i = 0; i < 50; i++) expect((await me(t, revoked.key)).status).toBe(401);
    const garbage = await pool(200, 25, () => me(t, typo()));
    expect(statuses(garbage)).toEqual({ 401: 200 });
    await me(t, valid.key).expect(200);
  });

  it('a burst at one key prefix from one address: exactly AUTH_FAILURE_LIMIT reach the database, counted before the work', async () => {
    const target = await createKey(t, s.admin.token);
    const auths = t.app.get(KeyAuthService);
    const before = auths.pathCounts.rejected;
    const burst = await Promise.all(
      Array.from({ length: 100 }, () => me(t, keyWithPrefix(target.key_prefix))),
    );
    expect(statuses(burst)).toEqual({ 401: 10, 429: 90 });
    expect(auths.pathCounts.rejected - before).toBe(10);
    const refused = burst.find((r) => r.status === 429)!;
    expect(refused.body.error.code).toBe('too_many_auth_failures');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    // Another address (a trusted proxy's X-Forwarded-For: loopback by default) has its own count ...
    await me(t, keyWithPrefix(target.key_prefix), '203.0.113.7').expect(401);
    // ... and so does the key itself (uncached: a lookup from an address that has not failed
    // at its prefix); once cached it is served from the throttled address too: hits cost nothing.
    await me(t, target.key, '203.0.113.7').expect(200);
    await me(t, target.key).expect(200);
  });

  it("a valid key's first requests in a burst from one address: all served, one database lookup", async () => {
    // Found by bench:steady: 32 connections opening with a key not cached yet took 32 limiter
    // points at once, and those past AUTH_FAILURE_LIMIT were answered 429 with a valid key.
    const fresh = await createKey(t, s.admin.token);
    const auths = t.app.get(KeyAuthService);
    const db = auths.pathCounts.db_hit;
    const coalesced = auths.pathCounts.coalesced;
    // 50 keep-alive connections opened first, then one request on each in the same tick, so
    // they reach the gateway together (a connect per request spreads them out).
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number }>((resolve, reject) =>
        httpGet(`${t.url}${path}`, { agent, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        }).on('error', reject),
      );
    await Promise.all(Array.from({ length: 50 }, () => get('/health/live')));
    const burst = await Promise.all(
      Array.from({ length: 50 }, () => get('/api/v1/me', { 'X-API-Key': fresh.key })),
    );
    agent.destroy();
    expect(statuses(burst)).toEqual({ 200: 50 });
    expect(auths.pathCounts.db_hit - db).toBe(1);
    expect(auths.pathCounts.coalesced - coalesced).toBe(49);
  });

  it('200 concurrent random keys with a known legacy prefix: bcrypt stays under its cap; the valid legacy key still gets in', async () => {
    const ds = t.app.get(DataSource);
    const legacyKey = `sk-legacyAB${Buffer.from(generateKey()).toString('hex').slice(0, 40)}`;
    const prefix = legacyKey.slice(0, 12);
    await ds.query(
      `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix) VALUES ($1, 'old', $2, $3)`,
      [s.tenantId, await bcrypt.hash(legacyKey, 10), prefix],
    );
    const gate = t.app.get(BcryptGate);
    const compares = gate.stats.compares;
    const started = Date.now();
    // 20 addresses x 10 attempts, all at once; a few repeat a key (single-flight shares one compare).
    const attempts = Array.from({ length: 200 }, (_, i) =>
      me(
        t,
        `${prefix}${i % 50 === 0 ? 'same-guess' : Math.random().toString(36).slice(2)}`,
        `198.51.100.${i % 20}`,
      ),
    );
    const res = await Promise.all(attempts);
    const seconds = (Date.now() - started) / 1000;
    const counts = statuses(res);
    expect(Object.keys(counts).every((c) => ['401', '429', '503'].includes(c))).toBe(true);
    const ran = gate.stats.compares - compares;
    // The documented bound: LEGACY_PREFIX_FAILURE_LIMIT a minute, then one a second (one candidate here).
    expect(ran).toBeLessThanOrEqual(20 + Math.ceil(seconds) + 1);
    expect(gate.stats.maxActive).toBeLessThanOrEqual(t.config.BCRYPT_CONCURRENCY);
    // The flood is over: within a second the holder of the key gets in (from a fresh address).
    await new Promise((r) => setTimeout(r, 1100));
    await me(t, legacyKey, '192.0.2.1').expect(200);
  });
});

describe('TRUST_PROXY=false: X-Forwarded-For is ignored', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { TRUST_PROXY: 'false', AUTH_FAILURE_LIMIT: '3' } });
  });
  afterAll(() => t.close());

  it('a spoofed header does not buy a new count', async () => {
    const prefix = generateKey().slice(0, 12);
    for (let i = 0; i < 3; i++) await me(t, keyWithPrefix(prefix), `10.0.0.${i}`).expect(401);
    await me(t, keyWithPrefix(prefix), '10.0.0.99').expect(429);
  });
});

describe('members stay in their lane; admins do not', () => {
  let t: TestApp;
  let s: TenantSession;
  beforeAll(async () => {
    t = await createTestApp();
    s = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  it('new keys take the defaults an admin set; a member may only lower them, never import; an admin may do all', async () => {
    const m = await createUser(t.url, s.tenantId, 'member');
    await request(t.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(auth(s.admin.token))
      .send({
        key_defaults: {
          quota_limit: 1000,
          max_budget: 5,
          rate_limit_rpm: 10,
          allowed_models: ['mock-gpt', 'gpt-4o-mini'],
          expires_in_days: 30,
        },
      })
      .expect(200)
      .expect((r) => expect(r.body.key_defaults).toMatchObject({ quota_limit: 1000, expires_in_days: 30 }));

    const plain = await createKey(t, m.token);
    expect(plain).toMatchObject({ quota_limit: 1000, max_budget: 5, rate_limit_rpm: 10 });
    expect((plain as unknown as { allowed_models: string[] }).allowed_models).toEqual([
      'mock-gpt',
      'gpt-4o-mini',
    ]);
    const days = (new Date(plain.expires_at!).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);

    const lower = await createKey(t, m.token, {
      quota_limit: 10,
      allowed_models: ['mock-gpt'],
      rate_limit_rpm: 2,
    });
    expect(lower).toMatchObject({ quota_limit: 10, rate_limit_rpm: 2 });

    const refused = async (body: Record<string, unknown>, code: string) => {
      const r = await request(t.url)
        .post('/api/v1/api-keys')
        .set(auth(m.token))
        .send({ name: 'x', ...body })
        .expect(403);
      expect(r.body.error.code).toBe(code);
      expect(r.body.error.message).toMatch(/admin/i);
    };
    await refused({ quota_limit: 1001 }, 'above_key_defaults');
    await refused({ quota_limit: null }, 'above_key_defaults');
    await refused({ allowed_models: ['gpt-4o'] }, 'above_key_defaults');
    await refused({ allowed_models: null }, 'above_key_defaults');
    await refused({ rate_limit_rpm: 11 }, 'above_key_defaults');
    await refused({ expires_at: new Date(Date.now() + 40 * 86_400_000).toISOString() }, 'above_key_defaults');
    await refused({ expires_at: null }, 'above_key_defaults');
    await refused({ key: generateKey() }, 'import_admin_only');

    // The admin may set anything, for the member too, and import.
    await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(s.admin.token))
      .send({
        name: 'big',
        user_id: m.id,
        quota_limit: 1e9,
        allowed_models: null,
        expires_at: null,
        key: generateKey(),
      })
      .expect(201)
      .expect((r) =>
        expect(r.body).toMatchObject({ quota_limit: 1e9, allowed_models: null, expires_at: null }),
      );

    // PATCH expires_at: a member may bring it forward, never push it back or remove it.
    const patch = (token: string, body: Record<string, unknown>) =>
      request(t.url).patch(`/api/v1/api-keys/${plain.id}`).set(auth(token)).send(body);
    const later = new Date(Date.now() + 60 * 86_400_000).toISOString();
    expect((await patch(m.token, { expires_at: later })).status).toBe(403);
    const none = await patch(m.token, { expires_at: null });
    expect(none.status).toBe(403);
    expect(none.body.error.code).toBe('expiry_admin_only');
    await patch(m.token, { expires_at: new Date(Date.now() + 86_400_000).toISOString() }).expect(200);
    await patch(s.admin.token, { expires_at: null }).expect(200);
  });
});

describe('sessions end on a password, role or status change and on "log out everywhere"', () => {
  let t: TestApp;
  let s: TenantSession;
  beforeAll(async () => {
    t = await createTestApp();
    s = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  const keys = (token: string) => request(t.url).get('/api/v1/api-keys').set(auth(token));

  it('password change', async () => {
    const m = await createUser(t.url, s.tenantId, 'member');
    await keys(m.token).expect(200);
    await request(t.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(auth(s.admin.token))
      .send({ password: 'a-new-password-123' })
      .expect(200);
    const r = await keys(m.token).expect(401);
    expect(r.body.error.code).toBe('session_revoked');
    await keys(await login(t.url, m.email, 'a-new-password-123')).expect(200);
  });

  it('role change, disable and re-enable', async () => {
    const m = await createUser(t.url, s.tenantId, 'member');
    await request(t.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(auth(s.admin.token))
      .send({ role: 'admin' })
      .expect(200);
    await keys(m.token).expect(401);
    const t2 = await login(t.url, m.email, m.password);
    await request(t.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(masterIn(s.tenantId))
      .send({ status: 'disabled' })
      .expect(200);
    await request(t.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(masterIn(s.tenantId))
      .send({ status: 'active' })
      .expect(200);
    await keys(t2).expect(401); // re-enabling does not revive the old token
    await keys(await login(t.url, m.email, m.password)).expect(200);
  });

  it('log out everywhere (self, and by an admin)', async () => {
    const m = await createUser(t.url, s.tenantId, 'member');
    const other = await login(t.url, m.email, m.password);
    await request(t.url).post('/auth/logout-all').set(auth(m.token)).expect(204);
    await keys(m.token).expect(401);
    await keys(other).expect(401);
    const fresh = await login(t.url, m.email, m.password);
    await request(t.url).post(`/api/v1/users/${m.id}/logout-all`).set(auth(s.admin.token)).expect(204);
    await keys(fresh).expect(401);
    await request(t.url).post('/auth/logout-all').set(masterIn(s.tenantId)).expect(400);
  });
});

describeWithRedis('a JWT issued before a password change is refused on both instances', () => {
  let A: TestApp;
  let B: TestApp;
  beforeAll(async () => {
    A = await createTestApp({ redis: true });
    B = await createTestApp({ redis: true, databaseUrl: A.databaseUrl });
  });
  afterAll(async () => {
    await A.close();
    await B.close();
  });

  it('401 on A and on B', async () => {
    const s = await createTenantWithAdmin(A.url);
    const m = await createUser(A.url, s.tenantId, 'member');
    for (const x of [A, B]) await request(x.url).get('/api/v1/api-keys').set(auth(m.token)).expect(200);
    await request(B.url)
      .patch(`/api/v1/users/${m.id}`)
      .set(auth(s.admin.token))
      .send({ password: 'changed-password-1' })
      .expect(200);
    for (const x of [A, B]) {
      const r = await request(x.url).get('/api/v1/api-keys').set(auth(m.token)).expect(401);
      expect(r.body.error.code).toBe('session_revoked');
    }
  });
});

describe('no cross-tenant existence oracle', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('emails are unique per tenant: a clash in another tenant is not visible; login names the tenant when needed', async () => {
    const a = await createTenantWithAdmin(t.url);
    const b = await createTenantWithAdmin(t.url);
    const body = { email: 'dana@shared.test', password: 'password-in-a-1', role: 'member' };
    await request(t.url).post('/api/v1/users').set(auth(a.admin.token)).send(body).expect(201);
    const dup = await request(t.url).post('/api/v1/users').set(auth(a.admin.token)).send(body).expect(409);
    expect(dup.body.error.code).toBe('user_exists');
    await request(t.url)
      .post('/api/v1/users')
      .set(auth(a.admin.token))
      .send({ ...body, email: 'DANA@shared.test' })
      .expect(409);
    // Another tenant's admin learns nothing: the same email is simply created there.
    await request(t.url)
      .post('/api/v1/users')
      .set(auth(b.admin.token))
      .send({ ...body, password: 'password-in-b-1' })
      .expect(201);
    // Login: an email in two tenants needs the tenant (by name or id); else the usual 401.
    const loginAs = (extra: Record<string, string>) =>
      request(t.url)
        .post('/auth/login')
        .send({ email: body.email, ...extra });
    await loginAs({ password: 'password-in-a-1' }).expect(401);
    await loginAs({ password: 'password-in-a-1', tenant: a.name }).expect(200);
    await loginAs({ password: 'password-in-b-1', tenant: b.tenantId }).expect(200);
    await loginAs({ password: 'password-in-b-1', tenant: a.name }).expect(401);
  });

  it('a key import that clashes gets the same 409 inside the tenant and outside', async () => {
    const a = await createTenantWithAdmin(t.url);
    const b = await createTenantWithAdmin(t.url);
    const material = generateKey();
    await createKey(t, a.admin.token, { key: material });
    const inside = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'x', key: material });
    const outside = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(b.admin.token))
      .send({ name: 'x', key: material });
    expect(inside.status).toBe(409);
    expect(outside.status).toBe(409);
    const strip = (e: { request_id?: string }) => ({ ...e, request_id: undefined });
    expect(strip(outside.body.error)).toEqual(strip(inside.body.error));
  });
});
