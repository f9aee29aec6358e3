import Redis from 'ioredis';
import request from 'supertest';
import { createTestApp, JWT_SECRET, MASTER_KEY, redisUrl, TestApp } from '../harness/app';
import { auth, badChecksum, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { withClient } from '../harness/servers';
import { captureStdout, jsonLines, logFilePath, sample, when, wired } from './capture';

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

async function createKey(t: TestApp, token: string, body: Record<string, unknown>) {
  const res = await request(t.url)
    .post('/api/v1/api-keys')
    .set(auth(token))
    .send({ name: 'flow', ...body })
    .expect(201);
  return { id: res.body.id as string, key: res.body.key as string };
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'How are the counters doing?' }],
  max_tokens: 50,
  ...extra,
});

/** Usage from an SSE body (the chunk that carries `usage`). */
function streamUsage(text: string): Usage {
  const chunks = text
    .split('\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)) as { usage?: Usage });
  const u = chunks.find((c) => c.usage)?.usage;
  if (!u) throw new Error(`no usage chunk in stream: ${text.slice(0, 500)}`);
  return u;
}

/**
 * The whole flow an operator watches: login, keys, completions (plain and streamed), each
 * kind of refusal. Afterwards the captured log holds none of the secrets, /metrics shows
 * the right counts, and the README's `redis-cli GET` key names show the key's figures.
 */
const describeMetered = when(wired.meteredCompletions, 'completions metered by the quota lib').describe;

describeMetered('operations view of a completions flow (needs Redis)', () => {
  let t: TestApp;
  let a: TenantSession;
  let out: ReturnType<typeof captureStdout>;
  let stdout = '';
  let metrics = '';
  const secrets: Record<string, string> = { MASTER_KEY, JWT_SECRET };
  let main: { id: string; key: string };
  const usages: Usage[] = [];
  let redisTokens: string | null = null;
  let redisSpend: string | null = null;
  let ledgerRows = -1;

  beforeAll(async () => {
    if (!redisUrl()) throw new Error('this suite needs redis-server (apt-get install -y redis-server)');
    out = captureStdout();
    try {
      t = await createTestApp({
        redis: true,
        env: {
          LOG_LEVEL: 'info',
          LOG_FILE: logFilePath(),
          LOG_STDOUT: 'true',
          NODE_ENV: 'production',
          AUTH_FAILURE_LIMIT: '1000',
        },
      });
      a = await createTenantWithAdmin(t.url);
      secrets.adminPassword = a.admin.password;
      secrets.adminJwt = a.admin.token;
      main = await createKey(t, a.admin.token, { rate_limit_rpm: 3 });
      const narrow = await createKey(t, a.admin.token, { allowed_models: ['mock-gpt'] });
      const tiny = await createKey(t, a.admin.token, { quota_limit: 10 });
      secrets.mainKey = main.key;
      secrets.narrowKey = narrow.key;
      secrets.tinyKey = tiny.key;
      const k = (key: string) => ({ Authorization: `Bearer ${key}` });

      // 1 plain + 1 streamed completion with the main key; its third request passes too (rpm 3)...
      const plain = await request(t.url)
        .post('/v1/chat/completions')
        .set(k(main.key))
        .send(chat('mock-gpt'))
        .expect(200);
      usages.push(plain.body.usage as Usage);
      const streamed = await request(t.url)
        .post('/v1/chat/completions')
        .set('X-API-Key', main.key)
        .send(chat('mock-gpt', { stream: true, stream_options: { include_usage: true } }))
        .expect(200);
      expect(streamed.headers['content-type']).toMatch(/text\/event-stream/);
      expect(streamed.text).toContain('data: [DONE]');
      usages.push(streamUsage(streamed.text));
      const third = await request(t.url)
        .post('/api/v1/chat/completions')
        .set(k(main.key))
        .send(chat('mock-gpt'));
      expect(third.status).toBe(200);
      usages.push(third.body.usage as Usage);
      // ...the fourth within the minute is refused: rate, key level.
      await request(t.url).post('/v1/chat/completions').set(k(main.key)).send(chat('mock-gpt')).expect(429);
      // A model the key may not use: model, key level.
      await request(t.url)
        .post('/v1/chat/completions')
        .set(k(narrow.key))
        .send(chat('mock-claude'))
        .expect(403);
      // A request larger than the key's token quota: tokens, key level.
      await request(t.url).post('/v1/chat/completions').set(k(tiny.key)).send(chat('mock-gpt')).expect(429);
      // Bad keys: a checksum typo, then a revoked key twice.
      const typo = badChecksum(main.key);
      await request(t.url).post('/v1/chat/completions').set(k(typo)).send(chat('mock-gpt')).expect(401);
      const unknown = await createKey(t, a.admin.token, {});
      await request(t.url).delete(`/api/v1/api-keys/${unknown.id}`).set(auth(a.admin.token)).expect(200);
      secrets.revokedKey = unknown.key;
      await request(t.url)
        .post('/v1/chat/completions')
        .set(k(unknown.key))
        .send(chat('mock-gpt'))
        .expect(401);
      await request(t.url)
        .post('/v1/chat/completions')
        .set(k(unknown.key))
        .send(chat('mock-gpt'))
        .expect(401);

      // Settlement and the ledger happen after the answer: wait for the README's Redis counters.
      const redis = new Redis(t.config.REDIS_URL!);
      const keyPath = `{${a.tenantId}}:key:${main.id}`;
      const total = usages.reduce((s, u) => s + u.total_tokens, 0);
      for (let i = 0; i < 50 && redisTokens !== String(total); i++) {
        redisTokens = await redis.get(`quota:${keyPath}`);
        if (redisTokens !== String(total)) await new Promise((r) => setTimeout(r, 100));
      }
      redisSpend = await redis.get(`spend:${keyPath}`);
      await redis.quit();

      metrics = (await request(t.url).get('/metrics').expect(200)).text;
      await t.close(); // flushes the ledger
      ledgerRows = await withClient(t.databaseUrl, async (c) =>
        Number(
          (await c.query('SELECT count(*) FROM usage_records WHERE api_key_id = $1', [main.id])).rows[0]
            .count,
        ),
      );
    } finally {
      stdout = out.text();
      out.restore();
    }
  });

  it('the log holds none of the secrets used (keys, JWT, password, master key)', () => {
    expect(jsonLines(stdout).length).toBeGreaterThan(5);
    for (const [name, secret] of Object.entries(secrets)) {
      expect({ name, found: stdout.includes(secret) }).toEqual({ name, found: false });
    }
  });

  it('completion lines carry tenant, user, key, route, status and latency', () => {
    const lines = jsonLines(stdout).filter((l) => l.key_id === main.id && l.msg === 'request completed');
    expect(lines.map((l) => l.status).sort()).toEqual([200, 200, 200, 429]);
    for (const l of lines) {
      expect(l).toMatchObject({
        tenant_id: a.tenantId,
        user_id: a.admin.id,
        principal: 'api-key',
        latency_ms: expect.any(Number),
        route: expect.stringMatching(/^\/(api\/)?v1\/chat\/completions$/),
      });
    }
  });

  it('/metrics counts requests, auth paths, refusals, tokens and spend of the flow', () => {
    const m = (series: string) => sample(metrics, series) ?? 0;
    expect(m('gateway_http_requests_total{route="/v1/chat/completions",method="POST",status="200"}')).toBe(2);
    expect(
      m('gateway_http_requests_total{route="/api/v1/chat/completions",method="POST",status="200"}'),
    ).toBe(1);
    expect(m('gateway_http_requests_total{route="/v1/chat/completions",method="POST",status="429"}')).toBe(2);
    expect(m('gateway_http_requests_total{route="/v1/chat/completions",method="POST",status="403"}')).toBe(1);
    expect(m('gateway_http_requests_total{route="/v1/chat/completions",method="POST",status="401"}')).toBe(3);

    expect(m('gateway_quota_refusals_total{level="key",type="rate"}')).toBe(1);
    expect(m('gateway_quota_refusals_total{level="key",type="model"}')).toBe(1);
    expect(m('gateway_quota_refusals_total{level="key",type="tokens"}')).toBe(1);

    // Eight key lookups found a row: main x4, narrow, tiny, the revoked key x2. Each of the four
    // keys comes from PostgreSQL first, the rest from a cache (a key used within a second of a
    // change may be read from PostgreSQL again: the key cache's delayed second eviction).
    const resolved = ['db_hit', 'lru_hit', 'redis_hit'].map((p) => m(`gateway_auth_path_total{path="${p}"}`));
    expect(resolved.reduce((a, b) => a + b, 0)).toBe(8);
    expect(resolved[0]).toBeGreaterThanOrEqual(4);
    expect(m('gateway_auth_path_total{path="format_reject"}')).toBe(1);
    // The revoked key, twice: found, then refused (key_revoked) each time; never negative-cached.
    expect(m('gateway_auth_path_total{path="rejected"}')).toBe(2);
    expect(m('gateway_auth_path_total{path="negative_hit"}')).toBe(0);

    const prompt = usages.reduce((s, u) => s + u.prompt_tokens, 0);
    const completion = usages.reduce((s, u) => s + u.completion_tokens, 0);
    expect(m('gateway_tokens_total{model="mock-gpt",kind="prompt"}')).toBe(prompt);
    expect(m('gateway_tokens_total{model="mock-gpt",kind="completion"}')).toBe(completion);
    // mock-gpt: 0.15 / 0.60 USD per million tokens; each request's cost is whole micro-dollars
    // (rounded up), so three requests may add up to 3 micro-dollars over the exact sum.
    const exact = (prompt * 0.15 + completion * 0.6) / 1e6;
    const spend = m('gateway_spend_usd_total{model="mock-gpt"}')!;
    expect(spend).toBeGreaterThanOrEqual(exact - 1e-12);
    expect(spend - exact).toBeLessThanOrEqual(3e-6);
    expect(sample(metrics, 'gateway_ledger_queue_depth')).toBeDefined();
    expect(m('gateway_ledger_flush_failures_total')).toBe(0);
    expect(sample(metrics, 'gateway_cache_entries{cache="apikey_lru"}')).toBeGreaterThan(0);
  });

  it("the README's redis-cli key names show the key's tokens and spend; the ledger has its rows", () => {
    const total = usages.reduce((s, u) => s + u.total_tokens, 0);
    expect(redisTokens).toBe(String(total));
    expect(Number(redisSpend)).toBeGreaterThan(0);
    expect(ledgerRows).toBe(3);
  });
});
