import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { createTestApp, MASTER_KEY, redisUrl, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, TenantSession, UserSession } from '../harness/factories';
import { FakeLlm, startFakeLlm } from './fake-llm';
import { Figures } from './figures';
import { MODEL, writeModelsFile } from './world';

/**
 * Issue 9, isolation: every admin route (enumerated from /docs-json, so a new route is
 * probed without touching this file) called by one tenant's admin and master-key session on
 * another tenant's resources, and by a member on another member's (and the admin's) keys
 * and usage. A leak is a 2xx on another's resource id, or any response that carries one of
 * the other side's ids, emails, key names or key prefixes. The other side's resources are
 * compared before and after, and their keys must still work.
 */
const fig = new Figures('isolation', 'Isolation: tenants and users', 3);

interface Side {
  t: TenantSession;
  members: UserSession[];
  keys: { id: string; key: string; name: string; prefix: string; owner: string }[];
}

interface Probe {
  who: string;
  method: string;
  path: string;
  status: number;
  leak: string | null;
}

describe('isolation across tenants and across users of one tenant', () => {
  let t: TestApp;
  let fake: FakeLlm;
  let A: Side;
  let B: Side;
  let ops: [string, string][] = [];
  const probes: Probe[] = [];

  const marker = () => `secret-${randomBytes(5).toString('hex')}`;

  async function side(): Promise<Side> {
    const tenant = await createTenantWithAdmin(t.url, `iso-${marker()}`);
    const members = [await createUser(t.url, tenant.tenantId), await createUser(t.url, tenant.tenantId)];
    const keys: Side['keys'] = [];
    for (const owner of [tenant.admin, ...members]) {
      const name = marker();
      const res = await request(t.url)
        .post('/api/v1/api-keys')
        .set(auth(owner.token))
        .send({ name })
        .expect(201);
      keys.push({ id: res.body.id, key: res.body.key, name, prefix: res.body.key_prefix, owner: owner.id });
      // some usage, so the usage routes have rows to leak
      await request(t.url)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${res.body.key}`)
        .send({ model: MODEL, messages: [{ role: 'user', content: 'usage' }] })
        .expect(200);
    }
    return { t: tenant, members, keys };
  }

  /** Strings that must never reach the other side. */
  const secretsOf = (s: Side) => [
    s.t.tenantId,
    s.t.name,
    s.t.admin.id,
    s.t.admin.email,
    ...s.members.flatMap((m) => [m.id, m.email]),
    ...s.keys.flatMap((k) => [k.id, k.name, k.prefix]),
  ];

  /** What the side's admin sees of it, without what use changes (last_used_at, usage, spend). */
  const VOLATILE = new Set(['last_used_at', 'current_quota_usage', 'spend', 'updated_at']);
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k]) => !VOLATILE.has(k))
              .map(([k, x]) => [k, stable(x)]),
          )
        : v;
  const snapshot = async (s: Side) =>
    stable({
      tenant: (await request(t.url).get(`/api/v1/tenants/${s.t.tenantId}`).set(auth(MASTER_KEY))).body,
      users: (await request(t.url).get('/api/v1/users?limit=100').set(auth(s.t.admin.token))).body,
      keys: (await request(t.url).get('/api/v1/api-keys?limit=100').set(auth(s.t.admin.token))).body,
    }) as { keys: { data: { user_id: string }[] } };

  beforeAll(async () => {
    fake = await startFakeLlm();
    t = await createTestApp({
      redis: !!redisUrl(),
      env: {
        MODELS_FILE: writeModelsFile(fake.url),
        LEDGER_FLUSH_MS: '50',
        AUTH_FAILURE_LIMIT: '1000000',
        LOGIN_ACCOUNT_LIMIT: '1000000',
        LOGIN_ADDRESS_LIMIT: '1000000',
      },
    });
    A = await side();
    B = await side();
    await new Promise((r) => setTimeout(r, 300)); // ledger rows written
    const doc = (await request(t.url).get('/docs-json').expect(200)).body as {
      paths: Record<string, Record<string, { security?: Record<string, unknown>[] }>>;
    };
    for (const [path, item] of Object.entries(doc.paths))
      for (const m of ['get', 'post', 'put', 'patch', 'delete'])
        if (
          item[m] &&
          (item[m].security ?? []).some((s) => 'bearer' in s) &&
          !(item[m].security ?? []).some((s) => 'api-key' in s) &&
          // Acts on the caller only (ends their own sessions: test/auth/abuse.e2e-spec.ts).
          path !== '/auth/logout-all'
        )
          ops.push([m.toUpperCase(), path]);
    ops = ops.sort();
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  /** Sends one probe and records whether it leaked (a 2xx on a foreign id, or a foreign string in the body). */
  async function probe(
    who: string,
    headers: Record<string, string>,
    method: string,
    path: string,
    foreign: string[],
    foreignIdInPath: boolean,
    body?: object,
  ): Promise<Probe> {
    let r = request(t.url)[method.toLowerCase() as 'get'](path).set(headers);
    if (body) r = r.send(body);
    const res = await r;
    const text = res.text ?? '';
    // an id the caller sent may come back in an error message: that is no leak
    const sent = path + JSON.stringify(body ?? {});
    const found = foreign.find((s) => !sent.includes(s) && text.includes(s));
    const leak =
      foreignIdInPath && res.status < 300
        ? `${res.status} on another's resource`
        : found
          ? `response holds ${found}`
          : null;
    const p = { who, method, path, status: res.status, leak };
    probes.push(p);
    return p;
  }

  const bodyFor = (method: string, path: string) =>
    method === 'PATCH'
      ? path.includes('/tenants/')
        ? { name: `pwned-${marker()}` }
        : { name: `pwned-${marker()}` }
      : method === 'POST'
        ? path.endsWith('/regenerate')
          ? {}
          : path.includes('api-keys') || path.includes('/auth/key')
            ? { name: `pwned-${marker()}`, user_id: B.members[0].id }
            : path.includes('/users')
              ? { email: `pwned-${marker()}@x.test`, password: 'pwned-password', role: 'admin' }
              : { name: `pwned-${marker()}` }
        : undefined;

  it('tenant A (admin JWT, master key in A, A admin naming B in X-Tenant-ID) never reaches tenant B', async () => {
    const before = await snapshot(B);
    const foreign = secretsOf(B);
    const foreignIds = [
      B.t.tenantId,
      B.t.admin.id,
      ...B.members.map((m) => m.id),
      ...B.keys.map((k) => k.id),
    ];
    const principals: [string, Record<string, string>][] = [
      ['A admin (JWT)', auth(A.t.admin.token)],
      ['A admin (JWT) + X-Tenant-ID: B', { ...auth(A.t.admin.token), 'X-Tenant-ID': B.t.tenantId }],
      ['master key in A', { ...auth(MASTER_KEY), 'X-Tenant-ID': A.t.tenantId }],
      ['A member (JWT)', auth(A.members[0].token)],
      ['A virtual key', { Authorization: `Bearer ${A.keys[0].key}` }],
    ];
    for (const [who, headers] of principals) {
      for (const [method, path] of ops) {
        // The master key manages all tenants by design (operator): /api/v1/tenants is not tenant-scoped.
        if (who.startsWith('master') && path.startsWith('/api/v1/tenants')) continue;
        if (path.includes('{')) {
          for (const id of foreignIds)
            await probe(
              who,
              headers,
              method,
              path.replace(/\{[^}]+\}/g, id),
              foreign,
              true,
              bodyFor(method, path),
            );
        } else {
          const queries =
            method === 'GET'
              ? [
                  '',
                  `?user_id=${B.members[0].id}`,
                  `?api_key_id=${B.keys[0].id}&group_by=key`,
                  `?tenant_id=${B.t.tenantId}&group_by=user`,
                ]
              : [''];
          for (const q of queries)
            await probe(who, headers, method, `${path}${q}`, foreign, false, bodyFor(method, path));
        }
      }
    }
    // a virtual key of A naming B
    await probe(
      'A virtual key + X-Tenant-ID: B',
      { Authorization: `Bearer ${A.keys[0].key}`, 'X-Tenant-ID': B.t.tenantId },
      'GET',
      '/api/v1/me',
      foreign,
      false,
    );
    await probe(
      'A virtual key + X-Tenant-ID: B',
      { Authorization: `Bearer ${A.keys[0].key}`, 'X-Tenant-ID': B.t.tenantId },
      'GET',
      '/v1/models',
      foreign,
      false,
    );

    const after = await snapshot(B);
    expect(after).toEqual(before);
    for (const k of B.keys)
      await request(t.url)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${k.key}`)
        .send({ model: MODEL, messages: [{ role: 'user', content: 'still mine' }] })
        .expect(200);
    const leaks = probes.filter((p) => p.leak);
    expect(leaks.map((p) => `${p.who}: ${p.method} ${p.path} -> ${p.leak}`)).toEqual([]);
  }, 120_000);

  it('a member never reaches another member of the tenant, nor the admin (keys, usage, users)', async () => {
    const [m1, m2] = A.members;
    const others = A.keys.filter((k) => k.owner !== m1.id);
    const before = await snapshot(A);
    const foreign = [
      m2.id,
      m2.email,
      A.t.admin.id,
      A.t.admin.email,
      ...others.flatMap((k) => [k.id, k.name, k.prefix]),
    ];
    const foreignIds = [m2.id, A.t.admin.id, ...others.map((k) => k.id)];
    const start = probes.length;
    for (const [method, path] of ops) {
      if (path.startsWith('/api/v1/tenants')) continue; // master only: covered above
      if (path.includes('{')) {
        for (const id of foreignIds)
          await probe(
            'member A1 vs A2 and admin',
            auth(m1.token),
            method,
            path.replace(/\{[^}]+\}/g, id),
            foreign,
            true,
            bodyFor(method, path),
          );
      } else {
        const queries =
          method === 'GET'
            ? [
                '',
                `?user_id=${m2.id}`,
                `?api_key_id=${others[0].id}`,
                '?group_by=key',
                '?group_by=user',
                '?group_by=model',
              ]
            : [''];
        const body =
          method === 'POST' && path.includes('key')
            ? { name: `x-${marker()}`, user_id: m2.id }
            : bodyFor(method, path);
        for (const q of queries)
          await probe(
            'member A1 vs A2 and admin',
            auth(m1.token),
            method,
            `${path}${q}`,
            foreign,
            false,
            body,
          );
      }
    }
    // what a member may see: their own keys and usage, nothing else
    const mine = await request(t.url).get('/api/v1/api-keys').set(auth(m1.token)).expect(200);
    expect(mine.body.data.map((k: { user_id: string }) => k.user_id)).toEqual([m1.id]);
    const usage = await request(t.url).get('/api/v1/usage?group_by=key').set(auth(m1.token)).expect(200);
    expect(JSON.stringify(usage.body)).toContain(A.keys.find((k) => k.owner === m1.id)!.id);
    const after = await snapshot(A);
    // m1 may have created keys of their own during the probes; nothing else changed
    const strip = (s: typeof before) => ({
      ...s,
      keys: {
        ...s.keys,
        data: s.keys.data.filter((k: { user_id: string }) => k.user_id !== m1.id),
        total: undefined,
      },
    });
    expect(strip(after)).toEqual(strip(before));
    const leaks = probes.slice(start).filter((p) => p.leak);
    expect(leaks.map((p) => `${p.who}: ${p.method} ${p.path} -> ${p.leak}`)).toEqual([]);
  }, 120_000);

  afterAll(() => {
    const by = new Map<string, Probe[]>();
    for (const p of probes) by.set(p.who, [...(by.get(p.who) ?? []), p]);
    const statuses = (ps: Probe[]) =>
      [...new Set(ps.map((p) => p.status))]
        .sort()
        .map((s) => `${s} x${ps.filter((p) => p.status === s).length}`)
        .join(', ');
    fig.intro(
      `The gateway in process; two tenants, each with an admin, two members, a key per user and usage rows. ` +
        `Admin routes probed (${ops.length}, from /docs-json): ${ops.map(([m, p]) => `\`${m} ${p}\``).join(', ')}. ` +
        `Ids of the other side are put in every {id}; list and usage routes get the other side's ids as filters; ` +
        `creates name the other side's user as owner.`,
    );
    fig.table(
      'Probes',
      ['who', 'probes', 'statuses', 'leaks'],
      [...by.entries()].map(([who, ps]) => [who, ps.length, statuses(ps), ps.filter((p) => p.leak).length]),
    );
    const leaks = probes.filter((p) => p.leak).length;
    fig.check('isolation probes', probes.length, '>= 200', probes.length >= 200);
    fig.check(
      'leaks (2xx on another tenant or user resource, or their data in a response)',
      leaks,
      '0',
      leaks === 0,
    );
    fig.note(
      'The master key manages every tenant by design (`/api/v1/tenants` is master-only and not tenant-scoped); it is probed on the tenant-scoped routes only.',
    );
  });
});
