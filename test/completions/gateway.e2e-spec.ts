import OpenAI from 'openai';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { FAKE_TEXT, FAKE_USAGE, FakeUpstream, fakeAnthropic, fakeOpenAi } from './fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from './harness';

async function createKey(url: string, token: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await request(url)
    .post('/api/v1/api-keys')
    .set(auth(token))
    .send({ name: 'sdk', ...body })
    .expect(201);
  return res.body.key as string;
}

/** The real gateway (AppModule, key guard, PostgreSQL) called by the official openai SDK with a virtual key. */
describe('completions through the gateway with a virtual key', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let t: TestApp;
  let a: TenantSession;
  let key: string;
  let sdk: OpenAI;

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    t = await createTestApp({
      env: {
        MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
        ...TEST_TIMEOUTS,
        AUTH_FAILURE_LIMIT: '1000',
      },
    });
    a = await createTenantWithAdmin(t.url);
    key = await createKey(t.url, a.admin.token);
    sdk = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0 });
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    await anthropic.close();
  });
  beforeEach(() => (openai.requests.length = 0));

  it('the openai SDK completes a chat against an OpenAI-compatible upstream, with usage', async () => {
    const c = await sdk.chat.completions.create({
      model: 'gpt-fake',
      messages: [{ role: 'user', content: 'Hi' }],
    });
    expect(c.choices[0].message.content).toBe(FAKE_TEXT);
    expect(c.usage).toMatchObject(FAKE_USAGE);
    // the upstream sees the gateway's credential, never the virtual key
    expect(openai.requests[0].headers.authorization).toBe(`Bearer ${UPSTREAM_SECRET}`);
    expect(JSON.stringify(openai.requests[0])).not.toContain(key);
  });

  it('the openai SDK streams a chat against an OpenAI-compatible upstream, with usage', async () => {
    const stream = await sdk.chat.completions.create({
      model: 'gpt-fake',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(FAKE_TEXT);
    expect(usage).toMatchObject(FAKE_USAGE);
  });

  it('the openai SDK completes and streams against the mock provider, with usage', async () => {
    const messages = [{ role: 'user' as const, content: 'What is the mock?' }];
    const c = await sdk.chat.completions.create({ model: 'mock-gpt', messages });
    expect(c.choices[0].message.content).toContain('You said: "What is the mock?"');
    expect(c.usage!.completion_tokens).toBeGreaterThan(0);
    const stream = await sdk.chat.completions.create({
      model: 'mock-gpt',
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(c.choices[0].message.content);
    expect(usage).toEqual(c.usage);
  });

  it('also under /api/v1, with X-API-Key; unknown fields pass the global validation pipe', async () => {
    const res = await request(t.url)
      .post('/api/v1/chat/completions')
      .set('X-API-Key', key)
      .send({ model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }], vendor_knob: 1 })
      .expect(200);
    expect(res.body.choices[0].message.content).toBe(FAKE_TEXT);
    expect(openai.requests[0].body.vendor_knob).toBe(1);
  });

  it('bad input and malformed JSON: 400 in the envelope', async () => {
    const bad = await request(t.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${key}`)
      .send({ model: 'gpt-fake', messages: 'hi' })
      .expect(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
    await request(t.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${key}`)
      .set('content-type', 'application/json')
      .send('{"model":')
      .expect(400);
  });

  it('no key, or an admin JWT: 401, no upstream call', async () => {
    const body = { model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }] };
    await request(t.url).post('/v1/chat/completions').send(body).expect(401);
    await request(t.url).post('/v1/chat/completions').set(auth(a.admin.token)).send(body).expect(401);
    await request(t.url).get('/v1/models').expect(401);
    expect(openai.requests).toHaveLength(0);
  });

  it('a key limited to some models: /v1/models lists those, another model is 403 before any upstream call', async () => {
    const limited = await createKey(t.url, a.admin.token, { allowed_models: ['mock-gpt'] });
    const models = await request(t.url)
      .get('/v1/models')
      .set('Authorization', `Bearer ${limited}`)
      .expect(200);
    expect(models.body.data.map((m: { id: string }) => m.id)).toEqual(['mock-gpt']);
    const all = await request(t.url).get('/api/v1/models').set('X-API-Key', key).expect(200);
    expect(all.body.data.length).toBeGreaterThan(10);
    const res = await request(t.url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${limited}`)
      .send({ model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }] })
      .expect(403);
    expect(res.body.error.code).toBe('model_not_allowed');
    expect(openai.requests).toHaveLength(0);
    const limitedSdk = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: limited, maxRetries: 0 });
    await expect(
      limitedSdk.chat.completions.create({ model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }] }),
    ).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
  });

  it('a client that disconnects mid-stream aborts the upstream request', async () => {
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'gpt-slow', messages: [{ role: 'user', content: 'Hi' }], stream: true }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let got = '';
    while (!got.includes('"w2 "')) got += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    expect((await openai.abortedFor('slow-stream')).aborted).toBe(true);
  });

  it('documents the routes in OpenAPI', async () => {
    const doc = await request(t.url).get('/docs-json').expect(200);
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        '/v1/chat/completions',
        '/api/v1/chat/completions',
        '/v1/models',
        '/api/v1/models',
      ]),
    );
  });
});

describe('completions with no MODELS_FILE: the built-in mock models (README quick start)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('gpt-4o-mini answers offline through the mock', async () => {
    const a = await createTenantWithAdmin(t.url);
    const key = await createKey(t.url, a.admin.token);
    const sdk = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0 });
    const c = await sdk.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(c.choices[0].message.content).toMatch(/mock answer/);
    expect(c.usage!.total_tokens).toBeGreaterThan(0);
    const models = await sdk.models.list();
    expect(models.data.map((m) => m.id)).toEqual(expect.arrayContaining(['mock-gpt', 'gpt-4o-mini']));
  });
});
