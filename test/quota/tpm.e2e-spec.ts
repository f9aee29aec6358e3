import request from 'supertest';
import { Client } from 'pg';
import { createDatabase, createTestApp, describeWithRedis, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, createUser, masterHeaders, TenantSession } from '../harness/factories';
import { FakeUpstream, fakeAnthropic, fakeOpenAi } from '../completions/fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from '../completions/harness';

/**
 * Tokens-per-minute limits (issue 17 item 3) over HTTP: two gateway instances on one Redis
 * and one PostgreSQL, the fake OpenAI upstream answering 21 prompt + 9 completion tokens.
 * The window holds each request's reservation from its admission, corrected to its actual
 * tokens when it ends; refusals are 429 rate_limit_exceeded with Retry-After.
 */
/**
 * Long enough that the gateway's estimate is above the fake's 21 prompt tokens: every request
 * then holds at least what it uses (actual <= reserved), and the window is a hard limit.
 */
const PROMPT = 'word '.repeat(40);

describeWithRedis('tokens-per-minute limits', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let db: string;
  let a: TestApp;
  let b: TestApp;
  let t: TenantSession;

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    db = await createDatabase();
    const env = { MODELS_FILE: await writeModelsFile(openai.url, anthropic.url), ...TEST_TIMEOUTS };
    a = await createTestApp({ databaseUrl: db, redis: true, env });
    b = await createTestApp({ databaseUrl: db, redis: true, env });
    t = await createTenantWithAdmin(a.url);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await openai.close();
    await anthropic.close();
  });

  const newKey = async (body: Record<string, unknown>, token = t.admin.token) =>
    (
      await request(a.url)
        .post('/api/v1/api-keys')
        .set(auth(token))
        .send({ name: 'tpm', ...body })
        .expect(201)
    ).body as { id: string; key: string; rate_limit_tpm: number | null };
  const chat = (url: string, key: string, maxTokens = 50) =>
    request(url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${key}`)
      .send({ model: 'gpt-fake', max_tokens: maxTokens, messages: [{ role: 'user', content: PROMPT }] });

  it('is set and shown on keys, users and tenants; bad values are 400', async () => {
    for (const bad of [0, -1, 1.5, 'many', 3_000_000_000]) {
      const res = await request(a.url)
        .post('/api/v1/api-keys')
        .set(auth(t.admin.token))
        .send({ name: 'bad', rate_limit_tpm: bad })
        .expect(400);
      expect(res.body.error.message).toMatch(/rate_limit_tpm/);
    }
    const k = await newKey({ rate_limit_tpm: 1000 });
    expect(k.rate_limit_tpm).toBe(1000);
    const patched = await request(a.url)
      .patch(`/api/v1/api-keys/${k.id}`)
      .set(auth(t.admin.token))
      .send({ rate_limit_tpm: null })
      .expect(200);
    expect(patched.body.rate_limit_tpm).toBeNull();
    const alias = await request(a.url)
      .post('/auth/key/generate')
      .set(auth(t.admin.token))
      .send({ name: 'alias', rate_limit_tpm: 500 })
      .expect(201);
    expect(alias.body.rate_limit_tpm).toBe(500);
    const u = await createUser(a.url, t.tenantId);
    const user = await request(a.url)
      .patch(`/api/v1/users/${u.id}`)
      .set(auth(t.admin.token))
      .send({ rate_limit_tpm: 2000 })
      .expect(200);
    expect(user.body.rate_limit_tpm).toBe(2000);
    const other = await createTenantWithAdmin(a.url);
    const tenant = await request(a.url)
      .patch(`/api/v1/tenants/${other.tenantId}`)
      .set(masterHeaders)
      .send({ rate_limit_tpm: 3000 })
      .expect(200);
    expect(tenant.body.rate_limit_tpm).toBe(3000);
  });

  it('100 concurrent requests over two instances: the tokens in any 60 s window (ledger) never exceed the limit; refusals carry Retry-After', async () => {
    const limit = 1500;
    const k = await newKey({ rate_limit_tpm: limit });
    const res = await Promise.all(Array.from({ length: 100 }, (_, i) => chat(i % 2 ? b.url : a.url, k.key)));
    const ok = res.filter((r) => r.status === 200);
    const refused = res.filter((r) => r.status === 429);
    expect(ok.length + refused.length).toBe(100);
    expect(ok.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.body.error).toMatchObject({ type: 'rate_limit_exceeded', code: 'rate_limit_exceeded' });
      expect(r.body.error.message).toMatch(/tokens per minute/);
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(r.headers['x-ratelimit-limit-tokens']).toBe(String(limit));
    }
    const rows = await ledger([k.id], ok.length);
    expect(rows).toHaveLength(ok.length);
    expect(maxWindowSum(rows, 60_000)).toBeLessThanOrEqual(limit);
  });

  it('the window holds the reservation, corrected to the actual tokens at the end: a second large request fits', async () => {
    // max_tokens 1000 reserves prompt + 1000; the answer is 30 tokens. Without the
    // correction the second request (another prompt + 1000) would not fit in 1500: its grant
    // would be lowered (x-gateway-max-tokens).
    const k = await newKey({ rate_limit_tpm: 1500 });
    const first = await chat(a.url, k.key, 1000).expect(200);
    expect(Number(first.headers['x-ratelimit-remaining-tokens'])).toBeLessThan(500);
    const second = await chat(b.url, k.key, 1000).expect(200);
    expect(second.headers['x-gateway-max-tokens']).toBeUndefined();
    // the tighter of quota and window is reported: here the window
    expect(second.headers['x-ratelimit-limit-tokens']).toBe('1500');
    expect(Number(second.headers['x-ratelimit-remaining-tokens'])).toBeLessThan(500);
  });

  it('limits the grant like a token quota: a large max_tokens is lowered to what fits, not refused', async () => {
    const k = await newKey({ rate_limit_tpm: 300 });
    openai.requests.length = 0;
    const res = await chat(a.url, k.key, 5000).expect(200);
    const sent = openai.requests[0].body as { max_tokens?: number; max_completion_tokens?: number };
    const cap = sent.max_completion_tokens ?? sent.max_tokens!;
    expect(cap).toBeLessThan(300);
    expect(res.headers['x-gateway-max-tokens']).toBe(String(cap));
  });

  it('a request that can never fit the window is refused without Retry-After', async () => {
    const k = await newKey({ rate_limit_tpm: 5 });
    const res = await chat(a.url, k.key).expect(429);
    expect(res.body.error.message).toMatch(/Request too large for the tokens-per-minute limit/);
    expect(res.headers['retry-after']).toBeUndefined();
  });

  it("a user's limit is shared by all their keys; a tenant's by all its users", async () => {
    const u = await createUser(a.url, t.tenantId);
    await request(a.url)
      .patch(`/api/v1/users/${u.id}`)
      .set(auth(t.admin.token))
      .send({ rate_limit_tpm: 200 })
      .expect(200);
    const k1 = await newKey({ user_id: u.id });
    const k2 = await newKey({ user_id: u.id });
    // each request holds prompt + 50 (then 30): 200 admits about 3; the user's two keys share it
    // each holds at least its prompt + QUOTA_MIN_COMPLETION_TOKENS (16): 12 never all fit in 200
    const res = await Promise.all(
      Array.from({ length: 12 }, (_, i) => chat(i % 2 ? b.url : a.url, i < 6 ? k1.key : k2.key)),
    );
    expect(res.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    const refused = res.filter((r) => r.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0].body.error.message).toMatch(/this user/);
    const rows = await ledger([k1.id, k2.id], res.filter((r) => r.status === 200).length);
    expect(maxWindowSum(rows, 60_000)).toBeLessThanOrEqual(200);

    const other = await createTenantWithAdmin(a.url);
    await request(a.url)
      .patch(`/api/v1/tenants/${other.tenantId}`)
      .set(masterHeaders)
      .send({ rate_limit_tpm: 150 })
      .expect(200);
    const m = await createUser(a.url, other.tenantId, 'admin');
    const x = await newKey({}, other.admin.token);
    const y = await newKey({}, m.token);
    // two admins' keys, 8 requests at once: at least prompt + 16 each never all fit in 150
    const both = await Promise.all(
      Array.from({ length: 8 }, (_, i) => chat(i % 2 ? b.url : a.url, i < 4 ? x.key : y.key)),
    );
    expect(both.filter((r) => r.status === 200).length).toBeGreaterThan(0);
    const over = both.filter((r) => r.status === 429);
    expect(over.length).toBeGreaterThan(0);
    expect(over[0].body.error.message).toMatch(/this tenant/);
    const tenantRows = await ledger([x.id, y.id], both.length - over.length);
    expect(maxWindowSum(tenantRows, 60_000)).toBeLessThanOrEqual(150);
  });

  /** The keys' ledger rows, once `admitted` of them have arrived (rows are written asynchronously). */
  async function ledger(keyIds: string[], admitted: number): Promise<{ at: number; tokens: number }[]> {
    const c = new Client({ connectionString: db });
    await c.connect();
    try {
      for (let i = 0; i < 100; i++) {
        const { rows } = await c.query<{ at: string; tokens: string }>(
          `SELECT extract(epoch from created_at) * 1000 AS at, prompt_tokens + completion_tokens AS tokens
             FROM usage_records WHERE api_key_id = ANY($1) AND prompt_tokens + completion_tokens > 0`,
          [keyIds],
        );
        if (rows.length >= admitted) return rows.map((r) => ({ at: Number(r.at), tokens: Number(r.tokens) }));
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`fewer than ${admitted} ledger rows arrived`);
    } finally {
      await c.end();
    }
  }
});

/** The largest sum of tokens over rows admitted within any window of `ms`. */
function maxWindowSum(rows: { at: number; tokens: number }[], ms: number): number {
  const s = [...rows].sort((x, y) => x.at - y.at);
  let best = 0;
  let sum = 0;
  let from = 0;
  for (const r of s) {
    sum += r.tokens;
    while (s[from].at <= r.at - ms) sum -= s[from++].tokens;
    best = Math.max(best, sum);
  }
  return best;
}
