import request from 'supertest';
import { createDatabase, redisUrl } from '../harness/app';
import { auth, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { Instance, sql, startInstance } from '../quota/harness';
import { FakeUpstream, fakeAnthropic, fakeOpenAi } from './fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from './harness';

/**
 * Hard limits through the whole gateway (issue 12, README "Quotas"): the allowance is sent
 * upstream as the cap, a key near its quota is served with a lowered cap, a runaway stream
 * is cut at the grant, a timeout after the upstream accepted charges the prompt. Both
 * quota stores: in-process and Redis.
 */
const stores: [string, string | undefined][] = [
  ['in-process store', undefined],
  ['Redis store', redisUrl()],
];

describe.each(stores)('hard limits (%s)', (_name, redis) => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let gw: Instance;
  let a: TenantSession;

  const newKey = async (body: Record<string, unknown> = {}) => {
    const res = await request(gw.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'k', ...body })
      .expect(201);
    return res.body as { id: string; key: string };
  };
  /** The key's ledger totals, once `n` rows are written (batches every LEDGER_FLUSH_MS). */
  const ledger = async (id: string, n = 1) => {
    for (let i = 0; ; i++) {
      const res = await request(gw.url)
        .get(`/api/v1/api-keys/${id}/usage`)
        .set(auth(a.admin.token))
        .expect(200);
      if (res.body.requests >= n || i > 200) return res.body;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const chat = (key: string, body: Record<string, unknown>) =>
    request(gw.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${key}`)
      .send({ messages: [{ role: 'user', content: 'Hi' }], ...body });
  const statuses = async (keyId: string) =>
    (
      await sql<{ status: string }>(
        gw.config.DATABASE_URL!,
        `SELECT status FROM usage_records WHERE api_key_id = $1`,
        [keyId],
      )
    ).map((r) => r.status);
  const sent = (model: string) => openai.requests.filter((r) => r.body.model === model).at(-1)!.body;

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    gw = await startInstance({
      databaseUrl: await createDatabase(),
      redisUrl: redis,
      env: {
        LEDGER_FLUSH_MS: '10',
        MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
        QUOTA_DEFAULT_MAX_TOKENS: '4096',
        ...TEST_TIMEOUTS,
        UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '3000',
        UPSTREAM_TOTAL_TIMEOUT_MS: '1500',
      },
    });
    a = await createTenantWithAdmin(gw.url);
  });
  afterAll(async () => {
    await gw.close();
    await openai.close();
    await anthropic.close();
  });

  it('a request without max_tokens reaches the upstream with an explicit cap equal to the grant', async () => {
    const k = await newKey();
    await chat(k.key, { model: 'gpt-fake' }).expect(200);
    expect(sent('echo').max_tokens).toBe(4096);
    // the client's own field is kept: max_completion_tokens
    await chat(k.key, { model: 'gpt-fake', max_completion_tokens: 50 }).expect(200);
    expect(sent('echo')).toMatchObject({ max_completion_tokens: 50 });
    expect(sent('echo').max_tokens).toBeUndefined();
    // a deployment's max_output_tokens bounds a larger client cap
    const capped = await chat(k.key, { model: 'gpt-capped', max_tokens: 5000 }).expect(200);
    expect(sent('echo').max_tokens).toBe(700);
    expect(capped.headers['x-gateway-max-tokens']).toBe('700');
    // Anthropic: max_tokens is the grant
    await chat(k.key, { model: 'claude-fake' }).expect(200);
    expect(anthropic.requests.at(-1)!.body.max_tokens).toBe(4096);
  });

  it('a key with 3,000 tokens left and no cap is served with the lowered cap; one with 10 left is refused naming the level', async () => {
    const k = await newKey({ quota_limit: 3000 });
    const res = await chat(k.key, { model: 'gpt-fake' }).expect(200);
    const grant = Number(res.headers['x-gateway-max-tokens']);
    expect(grant).toBeGreaterThan(2900);
    expect(grant).toBeLessThan(3000);
    expect(sent('echo').max_tokens).toBe(grant);
    expect((await ledger(k.id)).total_tokens).toBeLessThanOrEqual(3000);

    const tight = await newKey({ quota_limit: 20 });
    const refused = await chat(tight.key, { model: 'gpt-fake' }).expect(429);
    expect(refused.body.error).toMatchObject({ type: 'insufficient_quota', code: 'tokens_quota_exceeded' });
    expect(refused.body.error.message).toMatch(/key level\): limit 20 tokens in total/);
  });

  it('an upstream that ignores the cap and streams 5,000 tokens is cut at the grant; the ledger stays within the quota', async () => {
    const k = await newKey({ quota_limit: 500 });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${k.key}` },
      body: JSON.stringify({
        model: 'gpt-runaway',
        messages: [{ role: 'user', content: 'Hi' }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(res.status).toBe(200);
    const grant = Number(res.headers.get('x-gateway-max-tokens'));
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(text.split(' go').length - 1).toBe(grant);
    expect(chunks.at(-2).choices[0].finish_reason).toBe('length');
    const usage = chunks.at(-1).usage;
    expect(usage.completion_tokens).toBe(grant);
    const u = await ledger(k.id);
    expect(u.total_tokens).toBeLessThanOrEqual(500);
    expect(u.completion_tokens).toBe(grant);
    expect(await statuses(k.id)).toEqual(['cut']);
  });

  it('an unstreamed answer past the grant is charged in full and counted as a cap violation', async () => {
    const k = await newKey();
    await chat(k.key, { model: 'gpt-runaway', max_tokens: 100 }).expect(200);
    expect((await ledger(k.id)).completion_tokens).toBe(5000);
    const metrics = await request(gw.url).get('/metrics').expect(200);
    expect(metrics.text).toMatch(/gateway_cap_violations_total\{deployment="gpt-runaway#0"\} [1-9]/);
  });

  it('a timeout after the upstream accepted charges the prompt, with status timeout', async () => {
    const k = await newKey();
    const res = await chat(k.key, { model: 'gpt-accept-hang' }).expect(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    const u = await ledger(k.id);
    expect(u.prompt_tokens).toBeGreaterThan(0);
    expect(u.completion_tokens).toBe(0);
    expect(await statuses(k.id)).toEqual(['timeout']);
    // a failure before the upstream accepted (503) releases: zero tokens
    const k2 = await newKey();
    await chat(k2.key, { model: 'gpt-503' }).expect(502);
    expect((await ledger(k2.id)).total_tokens).toBe(0);
  });
});
