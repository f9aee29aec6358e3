import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import request from 'supertest';
import { ApiKeyGuard } from '@app/api-keys';
import { createTestApp, TestApp } from '../harness/app';
import { auth, badChecksum, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { jsonLines, logFilePath, sample } from '../observability/capture';
import { FakeUpstream, fakeAnthropic, fakeOpenAi } from './fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from './harness';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** Not sent: the client goes away at the answer's first bytes (its body is then left out). */
const ABORT = 'x-test-abort';

/** A raw HTTP call: the exact headers and body given (chunked when no content-length is set). */
function call(
  url: string,
  method: string,
  path: string,
  { [ABORT]: abort, ...headers }: Record<string, string>,
  body?: string | Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      if (abort) {
        res.once('data', () => {
          req.destroy();
          resolve({ status: res.statusCode!, headers: res.headers, text: '' });
        });
        return;
      }
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Side {
  name: 'hot' | 'nest';
  t: TestApp;
  a: TenantSession;
  keys: Record<'full' | 'embeddingsOnly' | 'rpm1', { id: string; key: string }>;
}

type Case = [
  name: string,
  method: string,
  path: string,
  headers: (s: Side) => Record<string, string>,
  body?: string | ((s: Side) => string),
];

const json = { 'content-type': 'application/json' };
const bearer = (s: Side, k: keyof Side['keys'] = 'full') => ({ authorization: `Bearer ${s.keys[k].key}` });
const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: 'gpt-fake',
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 20,
    ...extra,
  });
/** A user of the same email and password on both gateways (each has its own database). */
const LOGIN = 'parity-login@example.test';
const PASSWORD = 'parity-password-1';
let nested = '1';
for (let i = 0; i < 100; i++) nested = `[${nested}]`;

/** Every way a metered route can answer; each case goes to both gateways with the same request. */
const CASES: Case[] = [
  ['chat', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), chat()],
  [
    'chat-api-x-api-key',
    'POST',
    '/api/v1/chat/completions',
    (s) => ({ ...json, 'x-api-key': s.keys.full.key }),
    chat(),
  ],
  ['chat-query', 'POST', '/v1/chat/completions?a=1', (s) => ({ ...json, ...bearer(s) }), chat()],
  [
    'chat-charset',
    'POST',
    '/v1/chat/completions',
    (s) => ({ 'content-type': 'application/json; charset=UTF-8', ...bearer(s) }),
    chat(),
  ],
  [
    'chat-stream',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s) }),
    chat({ stream: true, stream_options: { include_usage: true } }),
  ],
  [
    'chat-stream-aborted',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s), [ABORT]: '1' }),
    chat({ model: 'gpt-slow', stream: true }),
  ],
  [
    'chat-chunked',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s), 'transfer-encoding': 'chunked' }),
    chat(),
  ],
  [
    'chat-vnd-json',
    'POST',
    '/v1/chat/completions',
    (s) => ({ 'content-type': 'application/vnd.x+json', ...bearer(s) }),
    chat(),
  ],
  ['chat-bom', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), `\ufeff${chat()}`],
  ['no-key', 'POST', '/v1/chat/completions', () => json, chat()],
  ['basic-auth', 'POST', '/v1/chat/completions', () => ({ ...json, authorization: 'Basic abc' }), chat()],
  [
    'bad-checksum',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, authorization: `Bearer ${badChecksum(s.keys.full.key)}` }),
    chat(),
  ],
  [
    'unknown-key',
    'POST',
    '/v1/chat/completions',
    () => ({ ...json, 'x-api-key': 'sk-legacyformat0123456789abcdefXYZ' }),
    chat(),
  ],
  [
    'tenant-mismatch',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s), 'x-tenant-id': '00000000-0000-4000-8000-000000000000' }),
    chat(),
  ],
  ['scope', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s, 'embeddingsOnly') }), chat()],
  [
    'unknown-model',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s) }),
    chat({ model: 'nope' }),
  ],
  [
    'invalid',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s) }),
    JSON.stringify({ model: 'gpt-fake' }),
  ],
  ['bad-json', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), '{"model":'],
  ['bad-json-no-key', 'POST', '/v1/chat/completions', () => json, '{"model":'],
  ['json-string', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), '"hello"'],
  ['whitespace', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), '  \n'],
  [
    'empty-body',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s), 'content-length': '0' }),
    '',
  ],
  ['no-body', 'POST', '/v1/chat/completions', (s) => bearer(s)],
  [
    'text-plain',
    'POST',
    '/v1/chat/completions',
    (s) => ({ 'content-type': 'text/plain', ...bearer(s) }),
    chat(),
  ],
  [
    'too-large',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s) }),
    chat({ pad: 'x'.repeat(70_000) }),
  ],
  ['too-deep', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s) }), `{"model":${nested}}`],
  [
    'utf16',
    'POST',
    '/v1/chat/completions',
    (s) => ({ 'content-type': 'application/json; charset=utf-16', ...bearer(s) }),
    chat(),
  ],
  [
    'gzip',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s), 'content-encoding': 'br' }),
    chat(),
  ],
  [
    'upstream-503',
    'POST',
    '/v1/chat/completions',
    (s) => ({ ...json, ...bearer(s) }),
    chat({ model: 'gpt-503' }),
  ],
  ['rpm-1', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s, 'rpm1') }), chat()],
  ['rpm-2', 'POST', '/v1/chat/completions', (s) => ({ ...json, ...bearer(s, 'rpm1') }), chat()],
  ['get', 'GET', '/v1/chat/completions', (s) => bearer(s)],
  ['trailing-slash', 'POST', '/v1/chat/completions/', (s) => ({ ...json, ...bearer(s) }), chat()],
  [
    'embeddings',
    'POST',
    '/v1/embeddings',
    (s) => ({ ...json, ...bearer(s) }),
    JSON.stringify({ model: 'embed-fake', input: ['a', 'b'] }),
  ],
  [
    'embeddings-nul',
    'POST',
    '/api/v1/embeddings',
    (s) => ({ ...json, ...bearer(s) }),
    JSON.stringify({ model: 'embed-fake', input: 'a\u0000' }),
  ],
  [
    'responses',
    'POST',
    '/v1/responses',
    (s) => ({ ...json, ...bearer(s) }),
    JSON.stringify({ model: 'resp-fake', input: 'Hi' }),
  ],
  [
    'messages',
    'POST',
    '/v1/messages',
    (s) => ({ ...json, ...bearer(s), 'anthropic-version': '2023-06-01' }),
    JSON.stringify({ model: 'claude-fake', max_tokens: 20, messages: [{ role: 'user', content: 'Hi' }] }),
  ],
  [
    'messages-no-key',
    'POST',
    '/api/v1/messages',
    () => json,
    JSON.stringify({ model: 'claude-fake', max_tokens: 20, messages: [] }),
  ],
  ['messages-bad-json', 'POST', '/v1/messages', (s) => ({ ...json, ...bearer(s) }), '{'],
  ['messages-scope', 'POST', '/v1/messages', (s) => ({ ...json, ...bearer(s, 'embeddingsOnly') }), '{}'],
  // the public login route (LOGIN_ACCOUNT_LIMIT 3 below): a success, three failures, then throttled
  ['login', 'POST', '/auth/login', () => json, JSON.stringify({ email: LOGIN, password: PASSWORD })],
  ['login-wrong-1', 'POST', '/auth/login', () => json, JSON.stringify({ email: LOGIN, password: 'nope' })],
  ['login-wrong-2', 'POST', '/auth/login', () => json, JSON.stringify({ email: LOGIN, password: 'nope' })],
  ['login-wrong-3', 'POST', '/auth/login', () => json, JSON.stringify({ email: LOGIN, password: 'x' })],
  [
    'login-throttled',
    'POST',
    '/auth/login',
    () => json,
    JSON.stringify({ email: LOGIN, password: PASSWORD }),
  ],
  ['login-invalid', 'POST', '/auth/login', () => json, JSON.stringify({ email: 'a@b.test' })],
  [
    'login-extra',
    'POST',
    '/auth/login',
    () => json,
    JSON.stringify({ email: 'a@b.test', password: 'x', role: 'admin' }),
  ],
  ['login-bad-json', 'POST', '/auth/login', () => json, '{"email":'],
  ['login-form', 'POST', '/auth/login', () => ({ 'content-type': 'text/plain' }), 'email=a'],
  [
    'login-query',
    'POST',
    '/auth/login?x=1',
    () => json,
    JSON.stringify({ email: 'b@b.test', password: 'x' }),
  ],
];

/** What may differ between two gateways answering the same request: ids, clocks, the request id's prefix. */
function normalize(text: string): string {
  return text
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replace(/(hot|nest)-rid-/g, 'rid-')
    .replace(/"(created|created_at)":\d+/g, '"$1":0')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>')
    .replace(/\b(chatcmpl|resp|msg|rs)[-_][A-Za-z0-9_-]+/g, '$1-<id>');
}

const DROP = new Set(['date', 'etag', 'keep-alive', 'connection', 'content-length']);
function view(a: Answer) {
  const headers = Object.fromEntries(
    Object.entries(a.headers)
      .filter(([k]) => !DROP.has(k) && !k.includes('reset'))
      .map(([k, v]) => [k, k === 'retry-after' ? 'n' : normalize(String(v))]),
  );
  return { status: a.status, etag: 'etag' in a.headers, headers, body: normalize(a.text) };
}

/**
 * The hot path (apps/gateway/src/hot-path.ts) against the Nest pipeline it stands in front
 * of (configureApp's `hotPath: false`): the same requests to two gateways give the same
 * status, headers and body, the same access-log line (or none, for refusals before
 * routing) and the same metrics; and the hot gateway's Nest key guard never runs.
 */
describe('hot path: the same answers as the Nest pipeline', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  const sides: Side[] = [];
  const logFile = logFilePath();
  const answers = new Map<string, Record<Side['name'], Answer>>();
  const metrics: Record<string, string> = {};
  /** Cases the hot gateway served through Nest's key guard. */
  const viaNest: string[] = [];
  const guardCalls = jest.spyOn(ApiKeyGuard.prototype, 'canActivate');

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    const modelsFile = await writeModelsFile(openai.url, anthropic.url);
    for (const name of ['hot', 'nest'] as const) {
      // One pino logger per process (nestjs-pino): the first app's LOG_FILE gets both apps' lines.
      const t = await createTestApp({
        env: {
          MODELS_FILE: modelsFile,
          ...TEST_TIMEOUTS,
          AUTH_FAILURE_LIMIT: '1000',
          LOGIN_ACCOUNT_LIMIT: '3',
          BODY_LIMIT: '64kb',
          LOG_LEVEL: 'info',
          LOG_FILE: logFile,
        },
        configure: { hotPath: name === 'hot' },
      });
      const a = await createTenantWithAdmin(t.url);
      await request(t.url)
        .post('/api/v1/users')
        .set(auth(a.admin.token))
        .send({ email: LOGIN, password: PASSWORD, role: 'member' })
        .expect(201);
      const key = async (body: Record<string, unknown>) => {
        const r = await request(t.url)
          .post('/api/v1/api-keys')
          .set(auth(a.admin.token))
          .send({ name: 'parity', ...body })
          .expect(201);
        return { id: r.body.id as string, key: r.body.key as string };
      };
      sides.push({
        name,
        t,
        a,
        keys: {
          full: await key({}),
          embeddingsOnly: await key({ permissions: ['embeddings'] }),
          rpm1: await key({ rate_limit_rpm: 1 }),
        },
      });
    }
    for (const [name, method, path, headers, bodyOf] of CASES) {
      const both = {} as Record<Side['name'], Answer>;
      for (const s of sides) {
        const body = typeof bodyOf === 'function' ? bodyOf(s) : bodyOf;
        const h: Record<string, string> = { ...headers(s), 'x-request-id': `${s.name}-rid-${name}` };
        if (body !== undefined && !h['transfer-encoding'])
          h['content-length'] ??= String(Buffer.byteLength(body));
        const guardsBefore = guardCalls.mock.calls.length;
        both[s.name] = await call(s.t.url, method, path, h, body);
        if (s.name === 'hot' && guardCalls.mock.calls.length !== guardsBefore) viaNest.push(name);
      }
      answers.set(name, both);
    }
    await new Promise((r) => setTimeout(r, 500)); // the last access lines, the aborted stream's
    for (const s of sides) metrics[s.name] = (await request(s.t.url).get('/metrics').expect(200)).text;
  });
  afterAll(async () => {
    for (const s of sides) await s.t.close();
    await openai.close();
    await anthropic.close();
    guardCalls.mockRestore();
  });

  it.each(CASES.map((c) => [c[0]]))('%s: status, headers and body', (name) => {
    const { hot, nest } = answers.get(name)!;
    expect(view(hot)).toEqual(view(nest));
  });

  it("requests and responses are born with Express's prototypes: none is changed per request", async () => {
    // (A prototype set per request gave each response its own hidden class, and kept the
    // request's garbage alive through young collections: docs/BENCHMARKS.md "Garbage per
    // request"; bornWithExpressPrototypes, unit-tested in hot-path.spec.ts.) The real app's server:
    const hot = sides.find((s) => s.name === 'hot')!;
    const server = hot.t.app.getHttpServer() as import('node:http').Server;
    const express = hot.t.app.getHttpAdapter().getInstance() as { request: object; response: object };
    const seen: [boolean, boolean][] = [];
    const born = (proto: object, o: object) => Object.prototype.isPrototypeOf.call(proto, o);
    const spy = (req: object, res: object) =>
      seen.push([born(express.request, req), born(express.response, res)]);
    server.prependListener('request', spy);
    try {
      const r = await call(hot.t.url, 'POST', '/v1/chat/completions', { ...json, ...bearer(hot) }, chat());
      expect(r.status).toBe(200);
      await request(hot.t.url).get('/health/live'); // a route Express serves: born the same way
    } finally {
      server.removeListener('request', spy);
    }
    // as constructed by the server, before anything else ran
    expect(seen).toEqual([
      [true, true],
      [true, true],
    ]);
  });

  it('the hot gateway serves every hot route itself; a path Express matches more loosely goes to Nest', () => {
    expect(viaNest).toEqual(['trailing-slash']);
  });

  it('the cases cover success, every refusal and both bodies parsers', () => {
    const status = (n: string) => answers.get(n)!.hot.status;
    expect(status('chat')).toBe(200);
    expect(status('chat-stream')).toBe(200);
    expect(status('chat-stream-aborted')).toBe(200);
    expect(status('chat-chunked')).toBe(200);
    expect(status('no-key')).toBe(401);
    expect(status('scope')).toBe(403);
    expect(status('bad-json')).toBe(400);
    expect(status('too-large')).toBe(413);
    expect(status('rpm-2')).toBe(429);
    expect(status('embeddings')).toBe(200);
    expect(status('responses')).toBe(200);
    expect(status('messages')).toBe(200);
    expect(answers.get('messages-no-key')!.hot.text).toContain('"type":"error"');
    expect(answers.get('chat')!.hot.headers['x-request-id']).toBe('hot-rid-chat');
    expect(status('login')).toBe(200);
    expect(answers.get('login')!.hot.text).toContain('"access_token":"eyJ');
    expect(status('login-wrong-1')).toBe(401);
    expect(status('login-wrong-3')).toBe(401);
    expect(status('login-throttled')).toBe(429);
    expect(answers.get('login-throttled')!.hot.headers['retry-after']).toBeDefined();
    expect(status('login-invalid')).toBe(400);
    expect(status('login-extra')).toBe(400);
    expect(status('login-bad-json')).toBe(400);
  });

  it('the same access-log line for each case (or none in both)', () => {
    const lines = jsonLines(readFileSync(logFile, 'utf8')).filter((l) =>
      String(l.msg).startsWith('request '),
    );
    const ids = (s: Side): Record<string, string> => ({
      [s.a.tenantId]: 'tenant',
      [s.a.admin.id]: 'user',
      ...Object.fromEntries(Object.entries(s.keys).map(([k, v]) => [v.id, k])),
    });
    const lineOf = (s: Side, name: string) => {
      const l = lines.find((x) => (x.req as { id?: string })?.id === `${s.name}-rid-${name}`);
      if (!l) return undefined;
      const { time: _t, latency_ms, err, ...rest } = l;
      const named = ids(s);
      return {
        ...rest,
        req: { ...(rest.req as object), id: name },
        latency: typeof latency_ms,
        err: err ? (err as { message?: string }).message : undefined,
        tenant_id: named[rest.tenant_id as string] ?? rest.tenant_id,
        user_id: named[rest.user_id as string] ?? rest.user_id,
        key_id: named[rest.key_id as string] ?? rest.key_id,
        keys: Object.keys(l).filter((k) => k !== 'err'),
      };
    };
    for (const [name] of CASES) {
      const [hot, nest] = sides;
      expect({ name, line: lineOf(hot, name) }).toEqual({ name, line: lineOf(nest, name) });
    }
    expect(lineOf(sides[0], 'chat-stream-aborted')).toMatchObject({ msg: 'request aborted', status: 499 });
    const chatLine = lineOf(sides[0], 'chat')!;
    expect(chatLine).toMatchObject({
      msg: 'request completed',
      status: 200,
      route: '/v1/chat/completions',
      key_id: 'full',
    });
  });

  it('the same HTTP metrics by route and status', () => {
    const series = (text: string) =>
      text
        .split('\n')
        .filter((l) =>
          /^gateway_(http_requests_total|auth_path_total|quota_refusals_total|login_attempts_total)\{/.test(
            l,
          ),
        )
        .filter((l) => !l.includes('route="/metrics"'))
        .sort();
    // Where a found key came from (PostgreSQL or the LRU) depends on timing: a key used within
    // a second of a change may be read again (the key cache's delayed second eviction).
    const found = /path="(db|lru|redis)_hit"/;
    const settled = (text: string) => series(text).filter((l) => !found.test(l));
    const resolved = (text: string) =>
      series(text)
        .filter((l) => found.test(l))
        .reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
    expect(settled(metrics.hot)).toEqual(settled(metrics.nest));
    expect(resolved(metrics.hot)).toBe(resolved(metrics.nest));
    expect(
      sample(
        metrics.hot,
        'gateway_http_requests_total{route="/v1/chat/completions",method="POST",status="200"}',
      ),
    ).toBeGreaterThan(0);
  });
});
