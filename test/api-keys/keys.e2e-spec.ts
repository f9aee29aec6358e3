import request from 'supertest';
import * as bcrypt from 'bcrypt';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { KeyAuthService, checksum, generateKey } from '@app/api-keys';
import { createTestApp, describeWithRedis, redisUrl, TestApp } from '../harness/app';
import {
  auth,
  badChecksum,
  createTenantWithAdmin,
  createUser,
  masterHeaders,
  masterIn,
  TenantSession,
} from '../harness/factories';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts every SQL statement the app sends (TypeORM calls logQuery for each). */
function countQueries(ds: DataSource): { readonly n: number; stop(): void } {
  const logger = ds.logger;
  const original = logger.logQuery.bind(logger);
  let n = 0;
  logger.logQuery = (...args: Parameters<typeof original>) => {
    n++;
    return original(...args);
  };
  return {
    get n() {
      return n;
    },
    stop: () => (logger.logQuery = original),
  };
}

async function createKey(url: string, token: string, body: Record<string, unknown> = {}) {
  const res = await request(url)
    .post('/api/v1/api-keys')
    .set(auth(token))
    .send({ name: 'k', ...body })
    .expect(201);
  return res.body as { id: string; key: string; key_prefix: string; user_id: string };
}

describe('API keys and the key guard (real PostgreSQL)', () => {
  let t: TestApp;
  let a: TenantSession;
  let b: TenantSession;
  let logFile: string;

  beforeAll(async () => {
    logFile = join(mkdtempSync(join(tmpdir(), 'gw-keys-log-')), 'app.log');
    t = await createTestApp({ env: { LOG_LEVEL: 'info', LOG_FILE: logFile, AUTH_FAILURE_LIMIT: '1000' } });
    a = await createTenantWithAdmin(t.url);
    b = await createTenantWithAdmin(t.url);
  });
  afterAll(() => t.close());

  it('creates a key shown once; both header styles authenticate', async () => {
    const k = await createKey(t.url, a.admin.token, {
      quota_limit: 1000,
      rate_limit_rpm: 60,
      allowed_models: ['mock-gpt'],
    });
    expect(k.key).toMatch(/^sk-[0-9A-Za-z]{38}$/);
    expect(k.key_prefix).toBe(k.key.slice(0, 12));
    const viaHeader = await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    const viaBearer = await request(t.url)
      .get('/v1/key/info')
      .set('Authorization', `Bearer ${k.key}`)
      .expect(200);
    expect(viaHeader.body).toMatchObject({
      id: k.id,
      tenant_id: a.tenantId,
      user_id: a.admin.id,
      quota_limit: 1000,
      rate_limit_rpm: 60,
    });
    expect(viaBearer.body.id).toBe(k.id);
    // never again: not in list or get
    const list = await request(t.url).get('/api/v1/api-keys').set(auth(a.admin.token)).expect(200);
    const one = await request(t.url).get(`/api/v1/api-keys/${k.id}`).set(auth(a.admin.token)).expect(200);
    for (const body of [list.body, one.body]) {
      const s = JSON.stringify(body);
      expect(s).not.toContain(k.key);
      expect(s).not.toMatch(/key_hash|key_lookup_hash|\$2[aby]\$/);
    }
    expect(one.body.status).toBe('active');
  });

  it('refuses a bad checksum with zero database queries', async () => {
    const k = await createKey(t.url, a.admin.token);
    const typo = badChecksum(k.key);
    const ds = t.app.get(DataSource);
    const counter = countQueries(ds);
    const auths = t.app.get(KeyAuthService);
    const before = auths.pathCounts.format_reject;
    for (let i = 0; i < 20; i++) {
      const res = await request(t.url).get('/api/v1/me').set('X-API-Key', typo).expect(401);
      expect(res.body.error.code).toBe('invalid_api_key');
    }
    counter.stop();
    expect(counter.n).toBe(0);
    expect(auths.pathCounts.format_reject - before).toBe(20);
  });

  it('unknown keys are negative-cached; garbage of every shape is a 401, never a 500', async () => {
    const unknown = generateKey();
    const auths = t.app.get(KeyAuthService);
    const neg = auths.pathCounts.negative_hit;
    await request(t.url).get('/api/v1/me').set('X-API-Key', unknown).expect(401);
    await request(t.url).get('/api/v1/me').set('X-API-Key', unknown).expect(401);
    expect(auths.pathCounts.negative_hit - neg).toBe(1);
    for (const bad of [
      '',
      'x',
      'sk-',
      'sk-' + 'a'.repeat(300),
      "sk-' OR 1=1 --",
      'Bearer',
      'sk-ünïcödé-key-value',
    ]) {
      const res = await request(t.url).get('/api/v1/me').set('X-API-Key', encodeURI(bad));
      expect([401]).toContain(res.status);
      expect(res.body.error.type).toBe('authentication_error');
    }
    const none = await request(t.url).get('/api/v1/me').expect(401);
    expect(none.body.error.code).toBe('missing_api_key');
  });

  it('a legacy key (bcrypt hash and prefix only) authenticates, gets its lookup hash, and its second request does no bcrypt', async () => {
    const ds = t.app.get(DataSource);
    const legacyKey = `sk-legacy${Buffer.from(generateKey()).toString('hex').slice(0, 40)}`;
    const [row] = await ds.query(
      `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix) VALUES ($1, 'old key', $2, $3) RETURNING id`,
      [a.tenantId, await bcrypt.hash(legacyKey, 4), legacyKey.slice(0, 12)],
    );
    const auths = t.app.get(KeyAuthService);
    const before = { ...auths.pathCounts };
    const first = await request(t.url)
      .get('/api/v1/me')
      .set('Authorization', `Bearer ${legacyKey}`)
      .expect(200);
    expect(first.body).toMatchObject({ id: row.id, user_id: null });
    expect(auths.pathCounts.legacy_fallback - before.legacy_fallback).toBe(1);
    expect(auths.pathCounts.legacy_upgraded - before.legacy_upgraded).toBe(1);
    const [stored] = await ds.query(`SELECT key_lookup_hash FROM api_keys WHERE id = $1`, [row.id]);
    expect(stored.key_lookup_hash).toMatch(/^[0-9a-f]{64}$/);
    await request(t.url).get('/api/v1/me').set('X-API-Key', legacyKey).expect(200);
    expect(auths.pathCounts.legacy_fallback - before.legacy_fallback).toBe(1);
    // A wrong key with the same prefix is still refused.
    await request(t.url)
      .get('/api/v1/me')
      .set('X-API-Key', legacyKey.slice(0, 12) + 'f'.repeat(30))
      .expect(401);
  });

  it('a legacy key that happens to look like a current-format key still works (its prefix is known)', async () => {
    const ds = t.app.get(DataSource);
    const k = generateKey();
    const legacyKey = badChecksum(k); // current shape, wrong checksum
    await ds.query(
      `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix) VALUES ($1, 'odd legacy', $2, $3)`,
      [a.tenantId, await bcrypt.hash(legacyKey, 4), legacyKey.slice(0, 12)],
    );
    await t.app.get(KeyAuthService).refreshLegacyPrefixes();
    await request(t.url).get('/api/v1/me').set('X-API-Key', legacyKey).expect(200);
  });

  it('revoked, expired, disabled user and disabled tenant: 401 with distinct codes', async () => {
    const c = await createTenantWithAdmin(t.url);
    const member = await createUser(t.url, c.tenantId, 'member');
    const revoked = await createKey(t.url, c.admin.token);
    const expiring = await createKey(t.url, c.admin.token, {
      expires_at: new Date(Date.now() + 1500).toISOString(),
    });
    const ofMember = await createKey(t.url, member.token);
    const plain = await createKey(t.url, c.admin.token);
    for (const k of [revoked, expiring, ofMember, plain])
      await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);

    await request(t.url).delete(`/api/v1/api-keys/${revoked.id}`).set(auth(c.admin.token)).expect(200);
    expect(
      (await request(t.url).get('/api/v1/me').set('X-API-Key', revoked.key).expect(401)).body.error.code,
    ).toBe('key_revoked');

    await sleep(1600);
    expect(
      (await request(t.url).get('/api/v1/me').set('X-API-Key', expiring.key).expect(401)).body.error.code,
    ).toBe('key_expired');

    await request(t.url)
      .patch(`/api/v1/users/${member.id}`)
      .set(auth(c.admin.token))
      .send({ status: 'disabled' })
      .expect(200);
    expect(
      (await request(t.url).get('/api/v1/me').set('X-API-Key', ofMember.key).expect(401)).body.error.code,
    ).toBe('user_disabled');

    await request(t.url)
      .patch(`/api/v1/tenants/${c.tenantId}`)
      .set(masterHeaders)
      .send({ status: 'disabled' })
      .expect(200);
    expect(
      (await request(t.url).get('/api/v1/me').set('X-API-Key', plain.key).expect(401)).body.error.code,
    ).toBe('tenant_disabled');
  });

  it('X-Tenant-ID naming another tenant than the key: 403', async () => {
    const k = await createKey(t.url, a.admin.token);
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).set('X-Tenant-ID', a.tenantId).expect(200);
    const res = await request(t.url)
      .get('/api/v1/me')
      .set('X-API-Key', k.key)
      .set('X-Tenant-ID', b.tenantId)
      .expect(403);
    expect(res.body.error.code).toBe('tenant_mismatch');
  });

  it('regenerate with a grace period: the old key works until the grace ends, then 401', async () => {
    const k = await createKey(t.url, a.admin.token);
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    const res = await request(t.url)
      .post(`/api/v1/api-keys/${k.id}/regenerate`)
      .set(auth(a.admin.token))
      .send({ grace_period_seconds: 2 })
      .expect(200);
    expect(res.body.key).not.toBe(k.key);
    expect(res.body.id).toBe(k.id);
    expect(res.body.previous_key_valid_until).not.toBeNull();
    await request(t.url).get('/api/v1/me').set('X-API-Key', res.body.key).expect(200);
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    await sleep(2100);
    expect((await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(401)).body.error.code).toBe(
      'key_expired',
    );
    await request(t.url).get('/api/v1/me').set('X-API-Key', res.body.key).expect(200);
    // without grace the old key stops at once
    const again = await request(t.url)
      .post(`/api/v1/api-keys/${k.id}/regenerate`)
      .set(auth(a.admin.token))
      .send({})
      .expect(200);
    await request(t.url).get('/api/v1/me').set('X-API-Key', res.body.key).expect(401);
    await request(t.url).get('/api/v1/me').set('X-API-Key', again.body.key).expect(200);
  });

  it("members see and manage only their own keys; other tenants' keys are 404", async () => {
    const m1 = await createUser(t.url, a.tenantId, 'member');
    const m2 = await createUser(t.url, a.tenantId, 'member');
    const k1 = await createKey(t.url, m1.token);
    const k2 = await createKey(t.url, m2.token);
    const kb = await createKey(t.url, b.admin.token);
    expect(k1.user_id).toBe(m1.id);
    const list = await request(t.url).get('/api/v1/api-keys?limit=100').set(auth(m1.token)).expect(200);
    expect(list.body.data.map((x: { id: string }) => x.id)).toEqual([k1.id]);
    for (const id of [k2.id, kb.id]) {
      await request(t.url).get(`/api/v1/api-keys/${id}`).set(auth(m1.token)).expect(404);
      await request(t.url)
        .patch(`/api/v1/api-keys/${id}`)
        .set(auth(m1.token))
        .send({ name: 'x' })
        .expect(404);
      await request(t.url).delete(`/api/v1/api-keys/${id}`).set(auth(m1.token)).expect(404);
      await request(t.url).post(`/api/v1/api-keys/${id}/regenerate`).set(auth(m1.token)).send({}).expect(404);
    }
    await request(t.url).get(`/api/v1/api-keys/${kb.id}`).set(auth(a.admin.token)).expect(404);
    await request(t.url).get(`/api/v1/api-keys/${kb.id}`).set(masterIn(a.tenantId)).expect(404);
    // members cannot pick another owner nor raise their own limits
    await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(m1.token))
      .send({ name: 'x', user_id: m2.id })
      .expect(403);
    await request(t.url)
      .patch(`/api/v1/api-keys/${k1.id}`)
      .set(auth(m1.token))
      .send({ quota_limit: 10 ** 9 })
      .expect(403);
    await request(t.url)
      .patch(`/api/v1/api-keys/${k1.id}`)
      .set(auth(m1.token))
      .send({ name: 'mine' })
      .expect(200);
    // the other keys are untouched
    await request(t.url).get('/api/v1/me').set('X-API-Key', k2.key).expect(200);
    await request(t.url).get('/api/v1/me').set('X-API-Key', kb.key).expect(200);
  });

  it('the backfill-tool aliases: POST /auth/key/generate and DELETE /auth/key/:id', async () => {
    const res = await request(t.url)
      .post('/auth/key/generate')
      .set(auth(a.admin.token))
      .send({
        name: 'Production API Key',
        max_budget: 100.0,
        rate_limit_rpm: 60,
        allowed_models: ['claude-sonnet-4-5-20250929'],
      })
      .expect(201);
    expect(res.body).toMatchObject({
      name: 'Production API Key',
      max_budget: 100,
      rate_limit_rpm: 60,
      allowed_models: ['claude-sonnet-4-5-20250929'],
    });
    expect(res.body.key_prefix).toBe(res.body.key.slice(0, 12));
    await request(t.url).get('/api/v1/me').set('X-API-Key', res.body.key).expect(200);
    await request(t.url).delete(`/auth/key/${res.body.id}`).set(auth(a.admin.token)).expect(200);
    await request(t.url).get('/api/v1/me').set('X-API-Key', res.body.key).expect(401);
  });

  it('imports an existing key; a duplicate import is 409; master key creates keys for the system user', async () => {
    const existing = `sk-imported-${Date.now()}-abcdefghijklmnop`;
    const res = await request(t.url)
      .post('/api/v1/api-keys')
      .set(masterIn(a.tenantId))
      .send({ name: 'imported', key: existing })
      .expect(201);
    expect(res.body.key).toBe(existing);
    await request(t.url).get('/api/v1/me').set('X-API-Key', existing).expect(200);
    await request(t.url)
      .post('/api/v1/api-keys')
      .set(masterIn(a.tenantId))
      .send({ name: 'again', key: existing })
      .expect(409);
    const users = await request(t.url).get('/api/v1/users?limit=100').set(masterIn(a.tenantId)).expect(200);
    const system = users.body.data.find((u: { role: string }) => u.role === 'system');
    expect(res.body.user_id).toBe(system.id);
  });

  it('validates input: bad limits, bad dates, unknown fields, non-UUID ids are 400', async () => {
    for (const body of [
      { name: '' },
      { name: 'x', quota_limit: -1 },
      { name: 'x', max_budget: 'lots' },
      { name: 'x', rate_limit_rpm: 0 },
      { name: 'x', allowed_models: 'gpt' },
      { name: 'x', expires_at: 'tomorrow' },
      { name: 'x', key: 'short' },
      { name: 'x', owner: 'me' },
    ]) {
      const res = await request(t.url).post('/api/v1/api-keys').set(auth(a.admin.token)).send(body);
      expect(res.status).toBe(400);
      expect(res.body.error.type).toBe('invalid_request_error');
    }
    await request(t.url).get('/api/v1/api-keys/not-a-uuid').set(auth(a.admin.token)).expect(400);
  });

  it('a key never appears in the log', async () => {
    const k = await createKey(t.url, a.admin.token);
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    await request(t.url).get('/api/v1/me').set('Authorization', `Bearer ${k.key}`).expect(200);
    await request(t.url)
      .get('/api/v1/me')
      .set('X-API-Key', k.key + 'x')
      .expect(401);
    await sleep(300);
    const log = readFileSync(logFile, 'utf8');
    expect(log.length).toBeGreaterThan(100);
    expect(log).not.toContain(k.key);
    expect(log).not.toContain(k.key.slice(3));
    expect(log).not.toContain(a.admin.token);
  });
});

describe('failed attempts are throttled per (address, key prefix), never a valid key for others', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ env: { AUTH_FAILURE_LIMIT: '5' } });
  });
  afterAll(() => t.close());

  it('bad keys from one address do not refuse a valid key; guesses at its own prefix get 429 with Retry-After', async () => {
    const a = await createTenantWithAdmin(t.url);
    const k = await createKey(t.url, a.admin.token);
    for (let i = 0; i < 20; i++)
      await request(t.url).get('/api/v1/me').set('X-API-Key', generateKey()).expect(401);
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);

    // Someone guessing keys with this key's prefix (valid checksums: each one is a database lookup).
    const body = () => k.key.slice(0, 12) + generateKey().slice(12, 35);
    const guess = () => {
      const b = body();
      return b + checksum(b);
    };
    for (let i = 0; i < 5; i++) await request(t.url).get('/api/v1/me').set('X-API-Key', guess()).expect(401);
    const res = await request(t.url).get('/api/v1/me').set('X-API-Key', guess()).expect(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(res.body.error.code).toBe('too_many_auth_failures');
    // The valid key itself is cached by now: cache hits are never throttled.
    await request(t.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
  });
});

describeWithRedis('two instances on one PostgreSQL and Redis', () => {
  let A: TestApp;
  let B: TestApp;
  beforeAll(async () => {
    A = await createTestApp({
      redis: true,
      env: { KEY_LRU_TTL_SECONDS: '60', KEY_REDIS_TTL_SECONDS: '600' },
    });
    B = await createTestApp({
      redis: true,
      databaseUrl: A.databaseUrl,
      env: { KEY_LRU_TTL_SECONDS: '60', KEY_REDIS_TTL_SECONDS: '600' },
    });
    expect(redisUrl()).toBeDefined();
  });
  afterAll(async () => {
    await A.close();
    await B.close();
  });

  it('a key cached on B through Redis is refused by B within 100 ms of a revoke on A', async () => {
    const s = await createTenantWithAdmin(A.url);
    const k = await createKey(A.url, s.admin.token);
    const authB = B.app.get(KeyAuthService);
    await request(B.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    const lruBefore = authB.pathCounts.lru_hit;
    await request(B.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    expect(authB.pathCounts.lru_hit - lruBefore).toBe(1); // B serves it from its own LRU

    await request(A.url).delete(`/api/v1/api-keys/${k.id}`).set(auth(s.admin.token)).expect(200);
    const revokedAt = Date.now();
    let status = 200;
    while (Date.now() - revokedAt < 100) {
      status = (await request(B.url).get('/api/v1/me').set('X-API-Key', k.key)).status;
      if (status === 401) break;
      await sleep(5);
    }
    expect(status).toBe(401);
    expect(Date.now() - revokedAt).toBeLessThan(100);
  });

  it('B hits Redis for a key A has cached', async () => {
    const s = await createTenantWithAdmin(A.url);
    const k = await createKey(A.url, s.admin.token);
    await request(A.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    const authB = B.app.get(KeyAuthService);
    const before = { ...authB.pathCounts };
    await request(B.url).get('/api/v1/me').set('X-API-Key', k.key).expect(200);
    expect(authB.pathCounts.redis_hit - before.redis_hit).toBe(1);
    expect(authB.pathCounts.db_hit - before.db_hit).toBe(0);
  });
});
