import { readFileSync } from 'node:fs';
import request from 'supertest';
import { Logger } from 'nestjs-pino';
import { createTestApp, JWT_SECRET, MASTER_KEY, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, masterHeaders, masterIn } from '../harness/factories';
import { captureStdout, jsonLines, logFilePath, sample } from './capture';

/**
 * A scripted admin flow with real log output captured (stdout and LOG_FILE): none of the
 * secrets used may appear, the request lines carry the fields operators filter on, and
 * /metrics counts the flow. Completions and keys join this flow once those libs land.
 */
describe('logs and metrics of a flow', () => {
  let t: TestApp;
  let out: ReturnType<typeof captureStdout>;
  const file = logFilePath();
  const secrets: Record<string, string> = { MASTER_KEY, JWT_SECRET };
  let metrics = '';
  let stdout = '';
  let tenantId = '';
  let userId = '';
  let closed = false;

  beforeAll(async () => {
    out = captureStdout();
    try {
      t = await createTestApp({
        env: { LOG_LEVEL: 'trace', LOG_FILE: file, LOG_STDOUT: 'true', NODE_ENV: 'production' },
      });
      const tenant = await createTenantWithAdmin(t.url);
      tenantId = tenant.tenantId;
      secrets.adminPassword = tenant.admin.password;
      secrets.adminJwt = tenant.admin.token;
      const member = await createUser(t.url, tenantId, 'member');
      userId = member.id;
      secrets.memberPassword = member.password;
      secrets.memberJwt = member.token;

      // A wrong password, a JWT-authenticated read, master-key calls, a bogus key on an admin route.
      await request(t.url)
        .post('/auth/login')
        .send({ email: member.email, password: 'wrong-password-x1' })
        .expect(401);
      secrets.wrongPassword = 'wrong-password-x1';
      await request(t.url).get(`/api/v1/users/${member.id}`).set(auth(tenant.admin.token)).expect(200);
      await request(t.url).get('/api/v1/users').set(masterIn(tenantId)).expect(200);
      await request(t.url).get('/api/v1/tenants').set(masterHeaders).expect(200);
      const bogusKey = 'sk-NotARealKey0123456789abcdefghijklmnopq';
      secrets.bogusKey = bogusKey;
      await request(t.url).get('/api/v1/users').set('Authorization', `Bearer ${bogusKey}`).expect(401);
      await request(t.url).get('/api/v1/users').set('X-API-Key', bogusKey).expect(401);
      // A password in a body that fails validation, and in a body that is not JSON at all.
      await request(t.url)
        .post('/api/v1/users')
        .set(masterIn(tenantId))
        .send({ email: 'not-an-email', password: 'validation-pw-xyz', role: 'member' })
        .expect(400);
      secrets.invalidPassword = 'validation-pw-xyz';
      await request(t.url)
        .post('/auth/login')
        .set('Content-Type', 'application/json')
        .send('{"email":"a@b.c","password":"broken-json-pw-q",')
        .expect(400);
      secrets.brokenJsonPassword = 'broken-json-pw-q';

      // Code that logs a secret by mistake must still not leak it.
      const logger = t.app.get(Logger);
      logger.log({ headers: { authorization: `Bearer ${MASTER_KEY}` }, msg: 'forwarding' });
      logger.warn(`retrying with ${member.token} as ${MASTER_KEY}`);

      metrics = (await request(t.url).get('/metrics').expect(200)).text;
      await t.close();
      closed = true;
    } finally {
      stdout = out.text();
      out.restore();
    }
  });

  afterAll(async () => {
    if (t && !closed) await t.close();
  });

  it('logs JSON lines to stdout and the same to LOG_FILE (directory created)', () => {
    expect(stdout.length).toBeGreaterThan(0);
    expect(jsonLines(stdout).length).toBeGreaterThan(10);
    expect(readFileSync(file, 'utf8')).toBe(stdout);
  });

  it('holds none of the secrets used', () => {
    for (const [name, secret] of Object.entries(secrets)) {
      expect({ name, found: stdout.includes(secret) }).toEqual({ name, found: false });
    }
    expect(stdout).toContain('[redacted]');
  });

  it('request lines carry request id, route, status, latency, tenant and user', () => {
    const lines = jsonLines(stdout).filter((l) => l.msg === 'request completed');
    const read = lines.find(
      (l) =>
        l.route === '/api/v1/users/:id' && (l.req as { method: string }).method === 'GET' && l.status === 200,
    );
    expect(read).toMatchObject({
      tenant_id: tenantId,
      user_id: expect.any(String),
      principal: 'user',
      latency_ms: expect.any(Number),
      req: { id: expect.any(String), method: 'GET', path: `/api/v1/users/${userId}` },
    });
    const refused = jsonLines(stdout).find((l) => l.route === '/auth/login' && l.status === 401);
    expect(refused).toMatchObject({ level: 40 });
    // customProps are bound once the response ended: no duplicate keys in a line.
    for (const raw of stdout.split('\n').filter((l) => l.includes('request completed'))) {
      expect(raw.match(/"route":/g)).toHaveLength(1);
    }
  });

  it('/metrics counts the flow by route pattern and status', () => {
    const n = (route: string, method: string, status: number) =>
      sample(metrics, `gateway_http_requests_total{route="${route}",method="${method}",status="${status}"}`);
    expect(n('/api/v1/tenants', 'POST', 201)).toBe(1);
    expect(n('/api/v1/users', 'POST', 201)).toBe(2);
    expect(n('/api/v1/users', 'POST', 400)).toBe(1);
    expect(n('/auth/login', 'POST', 200)).toBe(2);
    expect(n('/auth/login', 'POST', 401)).toBe(1);
    expect(n('/api/v1/users/:id', 'GET', 200)).toBe(1);
    expect(n('/api/v1/users', 'GET', 200)).toBe(1);
    expect(n('/api/v1/users', 'GET', 401)).toBe(2);
    expect(n('/api/v1/tenants', 'GET', 200)).toBe(1);
    // The body-parser refusal happens before routing.
    expect(n('unmatched', 'POST', 400)).toBe(1);
  });
});
