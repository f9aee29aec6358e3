import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import OpenAI from 'openai';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { createKey, ledgerRows } from './helpers';
import {
  FAKE_RESPONSE_TEXT,
  FAKE_RESPONSE_USAGE,
  FakeUpstream,
  fakeAnthropic,
  fakeOpenAi,
} from '../completions/fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from '../completions/harness';

/** The Responses API through the real gateway: official SDKs, mock and a fake OpenAI upstream, ledger, tenancy. */
describe('POST /v1/responses and stored responses', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let t: TestApp;
  let a: TenantSession;
  let b: TenantSession;

  const newKey = (tenant: TenantSession, body: Record<string, unknown> = {}) =>
    createKey(t.url, tenant, body);
  const sdk = (key: string) => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0 });
  const ledger = async (keyId: string, n: number) =>
    (await ledgerRows(t.databaseUrl, keyId, n)).map(({ created_at: _at, cost_micros: _c, ...r }) => r);
  const upstreamCalls = (model: string) =>
    openai.requests.filter((r) => r.path === '/v1/responses' && r.body.model === model);

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    t = await createTestApp({
      env: {
        MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
        LEDGER_FLUSH_MS: '10',
        QUOTA_DEFAULT_MAX_TOKENS: '1000',
        ...TEST_TIMEOUTS,
      },
    });
    a = await createTenantWithAdmin(t.url);
    b = await createTenantWithAdmin(t.url);
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    await anthropic.close();
  });

  describe('the openai SDK', () => {
    it('responses.create on the mock model: output_text and usage, charged once', async () => {
      const k = await newKey(a);
      const r = await sdk(k.key).responses.create({ model: 'mock-gpt', input: 'Tell me about unicorns' });
      expect(r.object).toBe('response');
      expect(r.status).toBe('completed');
      expect(r.output_text).toContain('You said: "Tell me about unicorns"');
      expect(r.usage!.input_tokens).toBeGreaterThan(0);
      expect(r.usage!.output_tokens).toBeGreaterThan(0);
      expect(await ledger(k.id, 1)).toEqual([
        {
          model: 'mock-gpt',
          provider: 'mock',
          prompt_tokens: r.usage!.input_tokens,
          completion_tokens: r.usage!.output_tokens,
          status: 'success',
        },
      ]);
    });

    it('streamed on the mock model: the response.* sequence, text and usage, charged once', async () => {
      const k = await newKey(a);
      const stream = await sdk(k.key).responses.create({
        model: 'mock-gpt',
        input: [{ role: 'user', content: 'Stream it' }],
        stream: true,
      });
      const types: string[] = [];
      let text = '';
      let final: OpenAI.Responses.Response | undefined;
      for await (const e of stream) {
        types.push(e.type);
        if (e.type === 'response.output_text.delta') text += e.delta;
        if (e.type === 'response.completed') final = e.response;
      }
      expect(types[0]).toBe('response.created');
      expect(types).toContain('response.output_item.added');
      expect(types).toContain('response.content_part.done');
      expect(types.at(-1)).toBe('response.completed');
      expect(text).toContain('You said: "Stream it"');
      expect(final!.usage!.output_tokens).toBeGreaterThan(0);
      const rows = await ledger(k.id, 1);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        prompt_tokens: final!.usage!.input_tokens,
        completion_tokens: final!.usage!.output_tokens,
      });
    });

    it("through a fake OpenAI upstream, plain and streamed: the key's budget goes up as max_output_tokens, the upstream usage is charged", async () => {
      const k = await newKey(a);
      const c = sdk(k.key);
      const r = await c.responses.create({ model: 'resp-fake', input: 'Hello', max_output_tokens: 300 });
      expect(r.output_text).toBe(FAKE_RESPONSE_TEXT);
      expect(r.usage).toEqual(FAKE_RESPONSE_USAGE);
      const s = await c.responses.create({ model: 'resp-fake', input: 'Hello', stream: true });
      let text = '';
      let usage: unknown;
      for await (const e of s) {
        if (e.type === 'response.output_text.delta') text += e.delta;
        if (e.type === 'response.completed') usage = e.response.usage;
      }
      expect(text).toBe(FAKE_RESPONSE_TEXT);
      expect(usage).toEqual(FAKE_RESPONSE_USAGE);

      const sent = upstreamCalls('resp-fake').slice(-2);
      expect(sent.map((x) => x.body.max_output_tokens)).toEqual([300, 1000]);
      expect(sent[0].headers.authorization).toBe(`Bearer ${UPSTREAM_SECRET}`);
      const row = {
        model: 'resp-fake',
        provider: 'openai',
        prompt_tokens: FAKE_RESPONSE_USAGE.input_tokens,
        completion_tokens: FAKE_RESPONSE_USAGE.output_tokens,
        status: 'success',
      };
      expect(await ledger(k.id, 2)).toEqual([row, row]);
    });
  });

  describe('@ai-sdk/openai (Responses by default)', () => {
    it('generateText and streamText work on the mock model and through the fake upstream', async () => {
      const k = await newKey(a);
      const provider = createOpenAI({ baseURL: `${t.url}/v1`, apiKey: k.key });
      const mock = await generateText({ model: provider('mock-gpt'), prompt: 'Hi from the AI SDK' });
      expect(mock.text).toContain('You said: "Hi from the AI SDK"');
      expect(mock.usage.inputTokens).toBeGreaterThan(0);
      const fake = await generateText({ model: provider('resp-fake'), prompt: 'Hi', maxRetries: 0 });
      expect(fake.text).toBe(FAKE_RESPONSE_TEXT);
      expect(fake.usage).toMatchObject({
        inputTokens: FAKE_RESPONSE_USAGE.input_tokens,
        outputTokens: FAKE_RESPONSE_USAGE.output_tokens,
        cachedInputTokens: 3,
        reasoningTokens: 2,
      });
      const streamed = streamText({ model: provider('resp-fake'), prompt: 'Hi', maxRetries: 0 });
      expect(await streamed.text).toBe(FAKE_RESPONSE_TEXT);
      expect((await streamed.usage).outputTokens).toBe(FAKE_RESPONSE_USAGE.output_tokens);
      const rows = await ledger(k.id, 3);
      expect(rows.map((r) => [r.model, r.status])).toEqual([
        ['mock-gpt', 'success'],
        ['resp-fake', 'success'],
        ['resp-fake', 'success'],
      ]);
      expect(rows[2]).toMatchObject({ prompt_tokens: 23, completion_tokens: 11 });
    });
  });

  describe('stored responses belong to their tenant', () => {
    it("tenant A's response id: A reads, cancels (upstream's answer) and deletes it; B gets 404 everywhere", async () => {
      const ka = await newKey(a);
      const kb = await newKey(b);
      const created = await sdk(ka.key).responses.create({ model: 'resp-fake', input: 'Mine' });
      const got = await request(t.url).get(`/v1/responses/${created.id}`).set(auth(ka.key)).expect(200);
      expect(got.body.id).toBe(created.id);
      expect((await sdk(ka.key).responses.retrieve(created.id)).output_text).toBe(FAKE_RESPONSE_TEXT);

      const before = openai.requests.length;
      for (const [method, path] of [
        ['get', `/v1/responses/${created.id}`],
        ['delete', `/v1/responses/${created.id}`],
        ['post', `/v1/responses/${created.id}/cancel`],
        ['get', `/api/v1/responses/${created.id}`],
      ] as const) {
        const res = await request(t.url)[method](path).set(auth(kb.key)).expect(404);
        expect(res.body.error.code).toBe('response_not_found');
      }
      const chained = await request(t.url)
        .post('/v1/responses')
        .set(auth(kb.key))
        .send({ model: 'resp-fake', input: 'go on', previous_response_id: created.id })
        .expect(404);
      expect(chained.body.error.param).toBe('previous_response_id');
      expect(openai.requests.length).toBe(before); // B never reached the upstream
      await expect(sdk(kb.key).responses.retrieve(created.id)).rejects.toMatchObject({ status: 404 });

      // A continues it (sent to the deployment that made it)
      await request(t.url)
        .post('/v1/responses')
        .set(auth(ka.key))
        .send({ model: 'resp-fake', input: 'go on', previous_response_id: created.id })
        .expect(200);
      expect(upstreamCalls('resp-fake').at(-1)!.body.previous_response_id).toBe(created.id);

      const cancel = await request(t.url)
        .post(`/v1/responses/${created.id}/cancel`)
        .set(auth(ka.key))
        .expect(400);
      expect(cancel.body.error.message).toContain('Cannot cancel');
      const del = await request(t.url).delete(`/v1/responses/${created.id}`).set(auth(ka.key)).expect(200);
      expect(del.body).toEqual({ id: created.id, object: 'response.deleted', deleted: true });
      await request(t.url).get(`/v1/responses/${created.id}`).set(auth(ka.key)).expect(404);
    });

    it('mock responses are stored too; store: false leaves nothing to retrieve; bad ids are 404', async () => {
      const k = await newKey(a);
      const kept = await sdk(k.key).responses.create({ model: 'mock-gpt', input: 'keep me' });
      expect((await sdk(k.key).responses.retrieve(kept.id)).output_text).toBe(kept.output_text);
      const gone = await sdk(k.key).responses.create({ model: 'mock-gpt', input: 'forget me', store: false });
      await request(t.url).get(`/v1/responses/${gone.id}`).set(auth(k.key)).expect(404);
      await request(t.url)
        .get(`/v1/responses/${'x'.repeat(200)}`)
        .set(auth(k.key))
        .expect(404);
      await request(t.url).get('/v1/responses/resp_..%2F..').set(auth(k.key)).expect(404);
    });
  });

  describe('refusals', () => {
    it('a model without the Responses API is a 400 naming it; background and bad input are 400s; nothing is charged', async () => {
      const k = await newKey(a);
      const res = await request(t.url)
        .post('/v1/responses')
        .set(auth(k.key))
        .send({ model: 'claude-fake', input: 'hi' })
        .expect(400);
      expect(res.body.error).toMatchObject({ code: 'unsupported_endpoint', param: 'model' });
      expect(res.body.error.message).toContain('"claude-fake" does not serve the Responses API');
      for (const [body, param] of [
        [{ model: 'mock-gpt', input: 'x', background: true }, 'background'],
        [{ model: 'mock-gpt' }, 'input'],
        [{ model: 'mock-gpt', input: 3 }, 'input'],
        [{ model: 'mock-gpt', input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
        [{ model: 'mock-gpt', input: 'x', stream: 'yes' }, 'stream'],
      ] as const) {
        const r = await request(t.url).post('/v1/responses').set(auth(k.key)).send(body).expect(400);
        expect(r.body.error.param).toBe(param);
      }
      expect(anthropic.requests).toHaveLength(0);
      expect(await ledger(k.id, 0)).toEqual([]);
    });

    it('an upstream 4xx is passed on (released, zero charge); a stream dying midway ends with an error event, charged for what was produced', async () => {
      const k = await newKey(a);
      const bad = await request(t.url)
        .post('/v1/responses')
        .set(auth(k.key))
        .send({ model: 'resp-bad', input: 'x' })
        .expect(400);
      expect(bad.body.error.message).toBe('Unsupported parameter');
      const died = await request(t.url)
        .post('/v1/responses')
        .set(auth(k.key))
        .send({ model: 'resp-die', input: 'x', stream: true })
        .buffer(true)
        .parse((res, cb) => {
          let s = '';
          res.on('data', (c: Buffer) => (s += c.toString()));
          res.on('end', () => cb(null, s));
        })
        .expect(200);
      const text = died.body as string;
      expect(text).toContain('event: response.output_text.delta');
      expect(text).toMatch(/event: error\ndata: \{"type":"error","code":"upstream_error"/);
      const rows = await ledger(k.id, 2);
      expect(rows[0]).toMatchObject({ prompt_tokens: 0, completion_tokens: 0, status: 'upstream_error' });
      expect(rows[1].status).toBe('upstream_error');
      expect(rows[1].completion_tokens).toBeGreaterThan(0);
    });

    it('a key without the responses scope gets 403 on every Responses route', async () => {
      const k = await newKey(a, { permissions: ['chat'] });
      const r = await request(t.url)
        .post('/v1/responses')
        .set(auth(k.key))
        .send({ model: 'mock-gpt', input: 'x' });
      expect(r.status).toBe(403);
      expect(r.body.error.type).toBe('permission_error');
      await request(t.url).get('/v1/responses/resp_x').set(auth(k.key)).expect(403);
      await request(t.url).delete('/v1/responses/resp_x').set(auth(k.key)).expect(403);
    });
  });
});
