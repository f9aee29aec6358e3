import { createHmac, randomUUID } from 'node:crypto';
import request from 'supertest';
import { generateKey } from '@app/api-keys';
import { isAnthropicPath } from '@app/observability';
import { createTestApp, JWT_SECRET, MASTER_KEY, redisUrl, TestApp } from '../harness/app';
import {
  auth,
  badChecksum,
  createTenantWithAdmin,
  createUser,
  TenantSession,
  UserSession,
} from '../harness/factories';
import { FakeLlm, startFakeLlm } from './fake-llm';
import { Figures } from './figures';
import { raw, RawResponse } from './raw-http';
import { MODEL, writeModelsFile } from './world';

/**
 * Issue 9, bad input: a corpus of malformed requests on every route the app registers
 * (the OpenAPI document at /docs-json plus the Express router, so a new route is covered
 * without touching this file). Every answer must be < 500, carry no stack trace, and every
 * refusal must be a 4xx in the `{"error": {"message", "type", "code"}}` envelope.
 */
const fig = new Figures('bad-input', 'Bad input: malformed requests on every route', 2);

interface Case {
  category: string;
  method: string;
  path: string;
  headers: [string, string][];
  body?: Buffer | string;
}

interface Outcome {
  c: Case;
  res: RawResponse;
  problems: string[];
}

const STACK = /\n\s+at\s|\(\/[^)]*:\d+:\d+\)|node_modules\/|\.ts:\d+:\d+/;
const b64url = (x: object | string) =>
  Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
function jwt(payload: object, secret = JWT_SECRET, header: object = { alg: 'HS256', typ: 'JWT' }): string {
  const h = b64url(header);
  const p = b64url(payload);
  const sig = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}

function check(c: Case, res: RawResponse): string[] {
  const problems: string[] = [];
  if (res.status === 0) return [`no response (${res.error ?? 'closed'})`];
  if (res.status >= 500) problems.push(`status ${res.status}`);
  if (STACK.test(res.body)) problems.push('stack trace in the body');
  for (const secret of [MASTER_KEY, JWT_SECRET])
    if (res.body.includes(secret)) problems.push('a secret in the body');
  if (res.status >= 400) {
    let body: any;
    try {
      body = JSON.parse(res.body);
    } catch {
      problems.push(`not JSON: ${JSON.stringify(res.body.slice(0, 80))}`);
      return problems;
    }
    const e = body?.error;
    // Anthropic's routes answer in Anthropic's envelope (what its SDK parses): {type: 'error', error: {type, message}}
    if (isAnthropicPath(c.path.split('?')[0])) {
      if (body?.type !== 'error' || typeof e?.message !== 'string' || typeof e?.type !== 'string')
        problems.push(`not the Anthropic error envelope: ${res.body.slice(0, 120)}`);
    } else if (
      !e ||
      typeof e.message !== 'string' ||
      typeof e.type !== 'string' ||
      !('code' in e) ||
      (e.code !== null && typeof e.code !== 'string')
    )
      problems.push(`not the error envelope: ${res.body.slice(0, 120)}`);
    if (!/application\/json/.test(res.headers['content-type'] ?? ''))
      problems.push('error not application/json');
  }
  return problems;
}

describe('bad input: every route, malformed every way', () => {
  let t: TestApp;
  let fake: FakeLlm;
  let a: TenantSession;
  let member: UserSession;
  let callerKey: string;
  let leaver: UserSession;
  let victimKeyId: string;
  let routes: string[] = [];
  const outcomes: Outcome[] = [];

  beforeAll(async () => {
    fake = await startFakeLlm();
    t = await createTestApp({
      redis: !!redisUrl(),
      env: {
        MODELS_FILE: writeModelsFile(fake.url),
        AUTH_FAILURE_LIMIT: '1000000',
        // The corpus sends many wrong logins from one address; throttling has its own tests (test/auth).
        LOGIN_ACCOUNT_LIMIT: '1000000',
        LOGIN_ADDRESS_LIMIT: '1000000',
        UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '2000',
      },
    });
    a = await createTenantWithAdmin(t.url);
    member = await createUser(t.url, a.tenantId, 'member');
    // POST /auth/logout-all ends the caller's sessions: the corpus sends it with this user's token.
    leaver = await createUser(t.url, a.tenantId, 'member');
    const caller = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'caller' })
      .expect(201);
    callerKey = caller.body.key;
    const victim = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'victim' })
      .expect(201);
    victimKeyId = victim.body.id;

    // every operation of the OpenAPI document, plus whatever the Express router holds
    const doc = (await request(t.url).get('/docs-json').expect(200)).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    const set = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths))
      for (const m of ['get', 'post', 'put', 'patch', 'delete'])
        if (item[m]) set.add(`${m.toUpperCase()} ${path}`);
    const router = (t.app.getHttpAdapter().getInstance() as { router: { stack: any[] } }).router;
    for (const layer of router.stack) {
      if (!layer.route || Object.keys(layer.route.methods).length > 20) continue;
      for (const p of ([] as string[]).concat(layer.route.path))
        for (const [m, on] of Object.entries(layer.route.methods as Record<string, boolean>))
          if (on && m !== '_all') set.add(`${m.toUpperCase()} ${p.replace(/:(\w+)/g, '{$1}')}`);
    }
    routes = [...set].sort();
  }, 60_000);

  afterAll(async () => {
    await t?.close();
    await fake?.close();
  });

  const cred = {
    admin: (): [string, string][] => [['Authorization', `Bearer ${a.admin.token}`]],
    key: (): [string, string][] => [['Authorization', `Bearer ${callerKey}`]],
    master: (): [string, string][] => [
      ['Authorization', `Bearer ${MASTER_KEY}`],
      ['X-Tenant-ID', a.tenantId],
    ],
  };
  const json: [string, string] = ['Content-Type', 'application/json'];

  /** A real id of tenant A for a route's {id} (so body validation and the service are reached). */
  const idFor = (path: string) =>
    path.startsWith('/api/v1/users')
      ? member.id
      : path.startsWith('/api/v1/api-keys')
        ? victimKeyId
        : path.startsWith('/api/v1/tenants')
          ? a.tenantId
          : randomUUID();
  const fill = (path: string, id: string) => path.replace(/\{[^}]+\}/g, id);
  const credsFor = (path: string) =>
    path.startsWith('/v1') || /^\/api\/v1\/(chat|models|me)/.test(path)
      ? [cred.key()]
      : path.startsWith('/api/v1/tenants')
        ? [cred.master()]
        : path === '/auth/logout-all'
          ? [[['Authorization', `Bearer ${leaver.token}`]] as [string, string][], cred.master()]
          : [cred.admin(), cred.master()];

  function corpus(): Case[] {
    const cases: Case[] = [];
    // a space goes out as %20 (as an HTTP client sends it); the malformed-HTTP cases keep theirs
    const add = (
      category: string,
      method: string,
      path: string,
      headers: [string, string][],
      body?: Buffer | string,
    ) => cases.push({ category, method, path: path.replace(/ /g, '%20'), headers, body });

    const deepArray = '['.repeat(5000) + ']'.repeat(5000);
    const deepObject = '{"a":'.repeat(3000) + '1' + '}'.repeat(3000);
    const brokenJson = [
      '{',
      '{"name":',
      '[1,2',
      'nul',
      '{"a":1,}',
      "{'name':'x'}",
      '{"name":"x"}}',
      '\u0000',
      '{"name":"x"',
    ];
    const sqlish = [
      "' OR '1'='1",
      '"; DROP TABLE users; --',
      "x'); DELETE FROM api_keys; --",
      '1 UNION SELECT password_hash FROM users',
    ];
    const wrongValues: unknown[] = [
      null,
      0,
      -1,
      1e308,
      -1e308,
      2 ** 64,
      1.5,
      '',
      'x'.repeat(10_000),
      true,
      [],
      {},
      ['a'],
      { $gt: '' },
    ];
    const fields = [
      'name',
      'email',
      'password',
      'role',
      'status',
      'quota_limit',
      'max_budget',
      'quota_period',
      'rate_limit_rpm',
      'allowed_models',
      'expires_at',
      'user_id',
      'key',
      'permissions',
      'grace_period_seconds',
      'model',
      'messages',
      'max_tokens',
      'stream',
      'temperature',
      'n',
      'tools',
    ];

    for (const route of routes) {
      const [method, path] = route.split(' ');
      const hasBody = ['POST', 'PATCH', 'PUT'].includes(method);
      const creds = credsFor(path);
      const real = fill(path, idFor(path));

      // ids: non-UUID, traversal, SQL, overlong, bad percent-encoding, unknown UUIDs
      if (path.includes('{')) {
        const ids = [
          'not-a-uuid',
          '-1',
          "1' OR '1'='1",
          '..%2F..%2F..%2Fetc%2Fpasswd',
          '%2e%2e%2f%2e%2e%2fpackage.json',
          '..',
          'a'.repeat(4000),
          '%00',
          '%E0%A4%A',
          '%C0%AF',
          '00000000-0000-0000-0000-000000000000',
          randomUUID(),
          `${randomUUID()}%20OR%201=1`,
          '%7B%7D',
        ];
        for (const id of ids)
          add(
            'ids: non-UUID, traversal, SQL, overlong, bad encoding, unknown',
            method,
            fill(path, id),
            [...creds[0], json],
            hasBody ? '{}' : undefined,
          );
      }
      if (hasBody) {
        for (const creds1 of creds) {
          for (const b of brokenJson) add('broken JSON', method, real, [...creds1, json], b);
          add('deeply nested JSON', method, real, [...creds1, json], deepArray);
          add('deeply nested JSON', method, real, [...creds1, json], deepObject);
          add(
            'deeply nested JSON',
            method,
            real,
            [...creds1, json],
            JSON.stringify({ name: JSON.parse('['.repeat(500) + ']'.repeat(500)) }),
          );
        }
        const creds1 = creds[0];
        for (const f of fields)
          for (const v of wrongValues)
            add(
              'wrong types and extreme numbers',
              method,
              real,
              [...creds1, json],
              JSON.stringify({ [f]: v }),
            );
        for (const s of sqlish)
          add(
            'SQL-looking strings',
            method,
            real,
            [...creds1, json],
            JSON.stringify({
              name: s,
              email: `${s}@x.test`,
              password: s,
              model: s,
              messages: [{ role: 'user', content: s }],
            }),
          );
        add(
          'huge body (2 MB)',
          method,
          real,
          [...creds1, json],
          JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }),
        );
        add(
          'invalid UTF-8',
          method,
          real,
          [...creds1, json],
          Buffer.concat([
            Buffer.from('{"name":"'),
            Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]),
            Buffer.from('"}'),
          ]),
        );
        add(
          'invalid UTF-8',
          method,
          real,
          [...creds1, ['Content-Type', 'application/json; charset=utf-16']],
          Buffer.from('{"name":"x"}', 'utf16le'),
        );
        for (const s of [
          'a\u0000b',
          '\u0001\u0002\u001b[31m',
          '\u202e\u0000',
          '\ud800',
          'line\r\nX-Injected: 1',
        ])
          add(
            'control characters',
            method,
            real,
            [...creds1, json],
            JSON.stringify({
              name: s,
              email: `a${s}@x.test`,
              password: `p${s}xxxxxxxx`,
              model: s,
              messages: [{ role: 'user', content: s }],
              quota_period: s,
            }),
          );
        add('content types', method, real, [...creds1, ['Content-Type', 'text/plain']], 'name=x');
        add(
          'content types',
          method,
          real,
          [...creds1, ['Content-Type', 'application/x-www-form-urlencoded']],
          'name=x&quota_limit=-1',
        );
        add(
          'content types',
          method,
          real,
          [...creds1, ['Content-Type', 'multipart/form-data; boundary=zz']],
          '--zz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--zz--\r\n',
        );
        add(
          'content types',
          method,
          real,
          [...creds1, json, ['Content-Encoding', 'gzip']],
          'not gzip at all',
        );
        add(
          'content types',
          method,
          real,
          [...creds1, json, ['Content-Encoding', 'br, zstd, x-unknown']],
          '{}',
        );
      } else {
        const queries = [
          '?offset=-1&limit=-5',
          '?limit=1e309',
          '?offset=99999999999999999999',
          '?limit=abc',
          '?limit[]=1',
          '?limit=1&limit=2',
          '?from=not-a-date&to=2026-13-45',
          '?group_by=key;DROP TABLE usage_records',
          '?from=0001-01-01&to=9999-12-31',
          '?__proto__[admin]=1&constructor[prototype][admin]=1',
          '?%ZZ=1',
          `?user_id=${encodeURIComponent("' OR 1=1 --")}`,
          '?api_key_id=not-a-uuid&group_by=day',
          `?q=${'x'.repeat(6000)}`,
        ];
        for (const q of queries) add('query strings', method, `${real}${q}`, creds[0]);
      }
    }

    // keys of every wrong shape, on the virtual-key routes
    const key = generateKey();
    const badKeys = [
      '',
      'Bearer',
      'Bearer ',
      'Bearer sk-',
      `Bearer ${badChecksum(key)}`,
      `Bearer ${generateKey()}`,
      `Bearer ${key}${key}`,
      `Bearer sk-${'A'.repeat(10_000)}`,
      'Bearer sk-üñíçødé',
      `Bearer ${key} extra`,
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      `Bearer ${a?.admin?.token ?? 'x.y.z'}`,
      `Bearer ${MASTER_KEY}`,
      "Bearer sk-' OR 1=1 --",
      'Bearer sk-%00%0d%0a',
      `bearer ${key}`,
    ];
    for (const p of ['GET /v1/models', 'POST /v1/chat/completions', 'GET /api/v1/me'])
      for (const k of badKeys) {
        const [m, path] = p.split(' ');
        add(
          'virtual keys of every wrong shape',
          m,
          path,
          [['Authorization', k], json],
          m === 'POST'
            ? JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }] })
            : undefined,
        );
      }
    for (const k of ['', 'sk-', key.toLowerCase(), `${key}\t`, 'x'.repeat(300)])
      add('virtual keys of every wrong shape', 'GET', '/v1/models', [['X-API-Key', k]]);
    add('virtual keys of every wrong shape', 'GET', '/v1/models', [
      ['X-API-Key', key],
      ['X-API-Key', callerKey],
    ]);
    add('virtual keys of every wrong shape', 'GET', '/v1/models', [
      ['X-API-Key', callerKey],
      ['X-Tenant-ID', randomUUID()],
    ]);
    add('virtual keys of every wrong shape', 'GET', '/v1/models', [
      ['X-API-Key', callerKey],
      ['X-Tenant-ID', "' OR 1=1"],
    ]);

    // JWTs: alg none, tampered, wrong secret, expired, bad claims
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: a?.admin?.id, tid: a?.tenantId, role: 'admin', iat: now, exp: now + 3600 };
    const [h, p, s] = (a?.admin?.token ?? 'x.y.z').split('.');
    const jwts = [
      `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`,
      `${b64url({ alg: 'none' })}.${b64url({ ...claims, role: 'admin' })}.${s}`,
      `${b64url({ alg: 'NONE' })}.${b64url(claims)}.`,
      `${h}.${b64url({ ...claims, role: 'system' })}.${s}`,
      `${h}.${p}.${s.slice(0, -2)}AA`,
      jwt(claims, 'not-the-secret-0123456789abcdef0123456789'),
      jwt({ ...claims, iat: now - 7200, exp: now - 3600 }),
      jwt({ ...claims, nbf: now + 3600 }),
      jwt({ ...claims, sub: "' OR 1=1 --", tid: '../../etc' }),
      jwt({ ...claims, sub: 42, tid: { $ne: null } }),
      jwt({ ...claims, sub: randomUUID(), tid: randomUUID() }),
      jwt(claims, JWT_SECRET, { alg: 'HS512', typ: 'JWT' }),
      jwt(claims, JWT_SECRET, { alg: 'RS256', typ: 'JWT' }),
      'a.b.c',
      '...',
      'eyJ',
      `${h}.${p}`,
      `${'x'.repeat(8000)}.${p}.${s}`,
    ];
    for (const path of [
      '/api/v1/api-keys',
      '/api/v1/users',
      '/api/v1/usage',
      `/api/v1/api-keys/${victimKeyId}`,
    ])
      for (const j of jwts)
        add('JWTs: alg none, tampered, wrong secret, expired, bad claims', 'GET', path, [
          ['Authorization', `Bearer ${j}`],
        ]);
    for (const tid of ['not-a-uuid', "' OR 1=1 --", randomUUID(), '', 'x'.repeat(5000), '%00'])
      add('master key with a bad X-Tenant-ID', 'GET', '/api/v1/users', [
        ['Authorization', `Bearer ${MASTER_KEY}`],
        ['X-Tenant-ID', tid],
      ]);

    // login
    const logins: unknown[] = [
      { email: 1, password: 2 },
      { email: ['a'], password: {} },
      { email: "' OR 1=1 --", password: "' OR 1=1 --" },
      { email: 'a\u0000@x.test', password: 'x\u0000' },
      { email: a?.admin?.email, password: 'p'.repeat(500_000) },
      { email: 'x'.repeat(100_000), password: 'x' },
      { email: a?.admin?.email },
      {},
      [],
      'str',
      null,
      { email: a?.admin?.email, password: a?.admin?.password, extra: { $where: '1' } },
    ];
    for (const l of logins) add('login bodies', 'POST', '/auth/login', [json], JSON.stringify(l));

    // huge headers, unknown routes and methods, odd request lines
    add('huge headers', 'GET', '/api/v1/users', [...cred.admin(), ['X-Filler', 'x'.repeat(20_000)]]);
    add('huge headers', 'GET', '/api/v1/users', [
      ...cred.admin(),
      ...Array.from({ length: 300 }, (_, i) => [`X-H${i}`, 'y'.repeat(60)] as [string, string]),
    ]);
    add('huge headers', 'GET', '/v1/models', [['Authorization', `Bearer ${'k'.repeat(12_000)}`]]);
    add('huge headers', 'GET', `/api/v1/users?${'q=1&'.repeat(5000)}`, cred.admin());
    for (const path of [
      '/nope',
      '/api/v1/../../etc/passwd',
      '/%2e%2e/%2e%2e/etc/passwd',
      '//',
      '/api/v1/users/',
      '/admin/..%2f..%2fpackage.json',
      '/admin/%00',
      '/docs/../../package.json',
      '/api/v1/%ZZ',
    ])
      add('unknown routes and traversal', 'GET', path, cred.admin());
    for (const m of ['PUT', 'OPTIONS', 'TRACE', 'PROPFIND', 'HEAD'])
      add('unknown routes and traversal', m, '/api/v1/users', cred.admin());

    // requests Node's HTTP parser refuses before any handler runs
    const malformed = (method: string, path: string, headers: [string, string][] = []) =>
      cases.push({ category: 'malformed HTTP (refused by the parser)', method, path, headers });
    malformed('GET', "/api/v1/users/1' OR '1'='1", cred.admin());
    malformed('GET', '/api/v1/usage?group_by=key;DROP TABLE usage_records', cred.admin());
    malformed('GET', '/api/v1/users\u0001\u0007', cred.admin());
    malformed('BREW', '/api/v1/users', cred.admin());
    malformed('GET', '/api/v1/users', [...cred.admin(), ['Bad Header Name', 'x']]);
    malformed('GET', '/api/v1/users', [...cred.admin(), ['X-Ctl', 'a\u0000b']]);
    malformed('POST', '/auth/login', [json, ['Transfer-Encoding', 'chunked'], ['Content-Length', '5']]);
    return cases;
  }

  it('answers every malformed request with < 500, no stack trace, and refusals in the error envelope', async () => {
    const cases = corpus();
    expect(cases.length).toBeGreaterThanOrEqual(200);
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++];
        const res = await raw(t.url, c.method, c.path, c.headers, c.body);
        outcomes.push({ c, res, problems: check(c, res) });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));

    const byCategory = new Map<string, Outcome[]>();
    for (const o of outcomes) byCategory.set(o.c.category, [...(byCategory.get(o.c.category) ?? []), o]);
    const count = (os: Outcome[], f: (o: Outcome) => boolean) => os.filter(f).length;
    const rows = [...byCategory.entries()].map(([cat, os]) => [
      cat,
      os.length,
      count(os, (o) => o.res.status >= 200 && o.res.status < 400),
      count(os, (o) => o.res.status >= 400 && o.res.status < 500),
      count(os, (o) => o.res.status >= 500),
      count(os, (o) => o.problems.includes('stack trace in the body')),
      count(os, (o) => o.problems.some((p) => /envelope|not JSON|application\/json/.test(p))),
      count(os, (o) => o.res.status === 0),
    ]);
    const total = [
      'all',
      outcomes.length,
      ...[2, 3, 4, 5, 6, 7].map((i) => rows.reduce((s, r) => s + Number(r[i]), 0)),
    ];
    const statuses = [...new Set(outcomes.map((o) => o.res.status))].sort().join(', ');
    fig.intro(
      `The gateway in process (AppModule + configureApp, Redis, PostgreSQL, a fake upstream), one tenant with an admin, a member and keys. ` +
        `Routes covered (${routes.length}, from /docs-json and the Express router): ${routes.map((r) => `\`${r}\``).join(', ')}.`,
    );
    fig.table(
      'Corpus',
      [
        'category',
        'requests',
        'accepted (2xx/3xx)',
        '4xx',
        '5xx',
        'stack traces',
        'refusals outside the envelope',
        'no answer',
      ],
      [...rows, total],
    );
    fig.note(`Statuses seen: ${statuses}.`);
    const bad = outcomes.filter((o) => o.problems.length);
    const fivexx = count(outcomes, (o) => o.res.status >= 500);
    const stacks = count(outcomes, (o) => o.problems.includes('stack trace in the body'));
    const envelopes = count(outcomes, (o) =>
      o.problems.some((p) => /envelope|not JSON|application\/json/.test(p)),
    );
    fig.check('malformed requests sent', outcomes.length, '>= 200', outcomes.length >= 200);
    fig.check('responses with 5xx', fivexx, '0', fivexx === 0);
    fig.check('stack traces', stacks, '0', stacks === 0);
    fig.check('refusals not in the error envelope', envelopes, '0', envelopes === 0);
    fig.check(
      'requests without an answer',
      count(outcomes, (o) => o.res.status === 0),
      '0',
      count(outcomes, (o) => o.res.status === 0) === 0,
    );
    expect(
      bad.map(
        (o) =>
          `${o.c.method} ${o.c.path.slice(0, 120)} [${o.c.category}] -> ${o.res.status}: ${o.problems.join('; ')} ${o.res.body.slice(0, 160)}`,
      ),
    ).toEqual([]);
  }, 180_000);

  it('the gateway still works afterwards (no poisoned state)', async () => {
    // (the corpus may have set tenant A's limits to odd but valid values: use a fresh tenant)
    const b = await createTenantWithAdmin(t.url);
    const k = await request(t.url)
      .post('/api/v1/api-keys')
      .set(auth(b.admin.token))
      .send({ name: 'after' })
      .expect(201);
    const res = await request(t.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${k.body.key}`)
      .send({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }] });
    expect(res.status === 200 ? 200 : `${res.status} ${res.text}`).toBe(200);
    expect(res.body.usage.total_tokens).toBeGreaterThan(0);
    await request(t.url).get('/api/v1/users').set(auth(a.admin.token)).expect(200);
  });
});
