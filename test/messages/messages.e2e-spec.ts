import Anthropic from '@anthropic-ai/sdk';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { withClient } from '../harness/servers';
import {
  ANTHROPIC_COUNT,
  ANTHROPIC_TEXT,
  ANTHROPIC_USAGE,
  FAKE_CACHED_TOKENS,
  FAKE_TEXT,
  FAKE_USAGE,
  FakeUpstream,
  fakeAnthropic,
  fakeOpenAi,
} from '../completions/fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from '../completions/harness';

const weather = {
  name: 'weather',
  description: 'The weather in a city',
  input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] },
};

/**
 * POST /v1/messages through the official Anthropic SDK, on the real gateway (PostgreSQL,
 * Redis, QuotaService), with fake Anthropic and OpenAI upstreams as local HTTP servers.
 */
describe('Anthropic Messages API (official SDK)', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let gw: TestApp;
  let a: TenantSession;

  const newKey = async (body: Record<string, unknown> = {}) => {
    const res = await request(gw.url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'k', ...body })
      .expect(201);
    return res.body as { id: string; key: string };
  };
  const usage = async (id: string, requests = 1) => {
    for (let i = 0; ; i++) {
      const res = await request(gw.url)
        .get(`/api/v1/api-keys/${id}/usage`)
        .set(auth(a.admin.token))
        .expect(200);
      if (res.body.requests >= requests || i > 150) return res.body;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  /** An SDK client on the gateway; `sent` collects the bodies it sent. */
  const client = (key: string, sent: string[] = [], versions: string[] = []) =>
    new Anthropic({
      baseURL: gw.url,
      apiKey: key,
      maxRetries: 0,
      fetch: (async (url: string, init: RequestInit) => {
        if (typeof init?.body === 'string') sent.push(init.body);
        versions.push(new Headers(init?.headers).get('anthropic-version') ?? '');
        return fetch(url, init);
      }) as unknown as typeof fetch,
    });

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    gw = await createTestApp({
      redis: true,
      env: {
        MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
        LEDGER_FLUSH_MS: '10',
        ...TEST_TIMEOUTS,
      },
    });
    a = await createTenantWithAdmin(gw.url);
  });
  afterAll(async () => {
    await gw.close();
    await openai.close();
    await anthropic.close();
  });

  describe('mock model (answered natively)', () => {
    it('messages.create: text, system prompt accepted, usage', async () => {
      const k = await newKey();
      const msg = await client(k.key).messages.create({
        model: 'mock-gpt',
        max_tokens: 100,
        system: 'Be brief.',
        messages: [{ role: 'user', content: 'Hello there' }],
      });
      expect(msg.type).toBe('message');
      expect(msg.content[0]).toMatchObject({ type: 'text' });
      expect((msg.content[0] as Anthropic.TextBlock).text).toContain('Hello there');
      expect(msg.stop_reason).toBe('end_turn');
      expect(msg.usage.input_tokens).toBeGreaterThan(0);
      expect(msg.usage.output_tokens).toBeGreaterThan(0);
      const u = await usage(k.id);
      expect(u).toMatchObject({
        requests: 1,
        prompt_tokens: msg.usage.input_tokens,
        completion_tokens: msg.usage.output_tokens,
      });
    });

    it("messages.stream: Anthropic's event sequence and the same final message", async () => {
      const k = await newKey();
      const stream = client(k.key).messages.stream({
        model: 'mock-gpt',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Stream please' }],
      });
      const final = await stream.finalMessage();
      expect((final.content[0] as Anthropic.TextBlock).text).toContain('Stream please');
      expect(final.usage.output_tokens).toBeGreaterThan(1);

      const raw = await request(gw.url)
        .post('/v1/messages')
        .set('x-api-key', k.key)
        .send({
          model: 'mock-gpt',
          max_tokens: 100,
          stream: true,
          messages: [{ role: 'user', content: 'Hi you' }],
        })
        .expect(200);
      const events = [...raw.text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      expect(events.slice(0, 3)).toEqual(['message_start', 'ping', 'content_block_start']);
      expect(new Set(events.slice(3, -3))).toEqual(new Set(['content_block_delta']));
      expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    });

    it('tool use round trip (tool_choice forces the tool), stop_sequences', async () => {
      const k = await newKey();
      const c = client(k.key);
      const first = await c.messages.create({
        model: 'mock-gpt',
        max_tokens: 100,
        tools: [weather],
        tool_choice: { type: 'tool', name: 'weather' },
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
      });
      expect(first.stop_reason).toBe('tool_use');
      const use = first.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
      expect(use.name).toBe('weather');
      const second = await c.messages.create({
        model: 'mock-gpt',
        max_tokens: 100,
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: first.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny, 21 C' }] },
        ],
      });
      expect(second.stop_reason).toBe('end_turn');
      expect(second.content[0].type).toBe('text');

      const cut = await c.messages.create({
        model: 'mock-gpt',
        max_tokens: 100,
        stop_sequences: ['mock answer'],
        messages: [{ role: 'user', content: 'Hi' }],
      });
      expect(cut).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: 'mock answer' });
      expect((cut.content[0] as Anthropic.TextBlock).text).toBe('This is a ');
    });
  });

  describe('anthropic deployment (pass-through)', () => {
    it("the upstream gets the client's body byte for byte, the upstream key and the anthropic headers", async () => {
      const k = await newKey();
      const sent: string[] = [];
      const versions: string[] = [];
      anthropic.requests.length = 0;
      const msg = await client(k.key, sent, versions).messages.create(
        {
          model: 'claude-fake',
          max_tokens: 300,
          system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
          temperature: 0.2,
          messages: [{ role: 'user', content: [{ type: 'text', text: 'Bonjour ?' }] }],
          thinking: { type: 'enabled', budget_tokens: 1024 },
        } as Anthropic.MessageCreateParamsNonStreaming,
        { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' } },
      );
      expect(msg.content).toEqual([{ type: 'text', text: ANTHROPIC_TEXT }]);
      expect(msg.usage).toMatchObject(ANTHROPIC_USAGE);
      const rec = anthropic.requests[0];
      // max_tokens is the grant: all of what was asked, as the key has no limit.
      expect(rec.raw).toBe(sent[0]);
      expect(rec.headers['x-api-key']).toBe(UPSTREAM_SECRET);
      expect(rec.headers.authorization).toBeUndefined();
      expect(versions[0]).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(rec.headers['anthropic-version']).toBe(versions[0]);
      expect(rec.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
      expect(await usage(k.id)).toMatchObject({
        requests: 1,
        prompt_tokens: ANTHROPIC_USAGE.input_tokens,
        completion_tokens: ANTHROPIC_USAGE.output_tokens,
      });
    });

    it('a key with less allowance than max_tokens: the grant goes upstream as max_tokens, nothing else changes', async () => {
      const k = await newKey({ quota_limit: 200 });
      const sent: string[] = [];
      anthropic.requests.length = 0;
      const msg = await client(k.key, sent).messages.create({
        model: 'claude-fake',
        max_tokens: 1000,
        messages: [{ role: 'user', content: 'Short please' }],
      });
      expect(msg.content).toEqual([{ type: 'text', text: ANTHROPIC_TEXT }]);
      const up = anthropic.requests[0];
      expect(up.body.max_tokens).toBeLessThan(200);
      expect(up.raw).toBe(sent[0].replace('"max_tokens":1000', `"max_tokens":${up.body.max_tokens}`));
    });

    it('messages.stream with a tool_use block, then the tool result', async () => {
      const k = await newKey();
      const c = client(k.key);
      const final = await c.messages
        .stream({
          model: 'claude-tools',
          max_tokens: 200,
          tools: [weather],
          messages: [{ role: 'user', content: 'Paris?' }],
        })
        .finalMessage();
      expect(final.stop_reason).toBe('tool_use');
      const use = final.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
      expect(use.input).toEqual({ city: 'Paris' });
      expect(final.usage).toMatchObject(ANTHROPIC_USAGE);
      const second = await c.messages.create({
        model: 'claude-tools',
        max_tokens: 200,
        tools: [weather],
        messages: [
          { role: 'user', content: 'Paris?' },
          { role: 'assistant', content: final.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny' }] },
        ],
      });
      expect(second.content).toEqual([{ type: 'text', text: ANTHROPIC_TEXT }]);
      const u = await usage(k.id, 2);
      expect(u).toMatchObject({ requests: 2, prompt_tokens: 2 * ANTHROPIC_USAGE.input_tokens });
    });

    it('cache writes and reads are priced at their own rates (ledger cost to the micro-dollar)', async () => {
      const k = await newKey();
      const msg = await client(k.key).messages.create({
        model: 'claude-cache',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'Cached?' }],
      });
      expect(msg.usage).toMatchObject({ cache_creation_input_tokens: 1000, cache_read_input_tokens: 20000 });
      // 17 x $3 + 1000 x $3.75 + 20000 x $0.30 + 8 x $15 per million = 9921 micro-dollars
      const u = await usage(k.id);
      expect(u).toMatchObject({
        prompt_tokens: 17 + 1000 + 20000,
        completion_tokens: 8,
        cache_write_tokens: 1000,
        cache_read_tokens: 20000,
      });
      expect(Math.round(u.cost_usd * 1e6)).toBe(9921);
    });

    it("OpenAI's cached_tokens: priced at cache_read on chat, cache_read_input_tokens on messages", async () => {
      const k = await newKey();
      const chat = await request(gw.url)
        .post('/v1/chat/completions')
        .set('authorization', `Bearer ${k.key}`)
        .send({ model: 'gpt-cached', messages: [{ role: 'user', content: 'Hi' }] })
        .expect(200);
      expect(chat.body.usage.prompt_tokens_details).toEqual({ cached_tokens: FAKE_CACHED_TOKENS });
      // (21 - 5) x $1 + 5 x $0.50 + 9 x $2 per million = 36.5, rounded up: 37 micro-dollars
      const u = await usage(k.id);
      expect(u).toMatchObject({
        prompt_tokens: 21,
        cache_read_tokens: FAKE_CACHED_TOKENS,
        cache_write_tokens: 0,
      });
      expect(Math.round(u.cost_usd * 1e6)).toBe(37);
      const msg = await client(k.key).messages.create({
        model: 'gpt-cached',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'Hi' }],
      });
      expect(msg.usage).toMatchObject({
        input_tokens: 16,
        cache_read_input_tokens: FAKE_CACHED_TOKENS,
        output_tokens: 9,
      });
      const u2 = await usage(k.id, 2);
      expect(Math.round(u2.cost_usd * 1e6)).toBe(74);
    });

    it('an upstream that ignores max_tokens is cut near the grant: max_tokens stop, charged the grant', async () => {
      const k = await newKey();
      const stream = client(k.key).messages.stream({
        model: 'claude-runaway',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Go on forever' }],
      });
      let text = '';
      stream.on('text', (t) => (text += t));
      const final = await stream.finalMessage();
      expect(final.stop_reason).toBe('max_tokens');
      expect(final.usage.output_tokens).toBe(100);
      // cut once past the grant by the tokenizers' margin (1.25 x 100 + 32), never at 5,000
      const tokens = text.split(' go').length - 1;
      expect(tokens).toBeGreaterThan(100);
      expect(tokens).toBeLessThanOrEqual(158);
      const u = await usage(k.id);
      expect(u.completion_tokens).toBe(100);
    });

    it('a stream the client drops mid-way is charged what was streamed', async () => {
      const k = await newKey();
      const ac = new AbortController();
      const res = await fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': k.key },
        body: JSON.stringify({
          model: 'claude-slow',
          max_tokens: 4000,
          stream: true,
          messages: [{ role: 'user', content: 'Go' }],
        }),
        signal: ac.signal,
      });
      const reader = res.body!.getReader();
      let got = '';
      while (!got.includes('w5 ')) got += new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      await anthropic.abortedFor('claude-slow');
      const u = await usage(k.id);
      expect(u.requests).toBe(1);
      expect(u.prompt_tokens).toBe(ANTHROPIC_USAGE.input_tokens);
      expect(u.completion_tokens).toBeGreaterThanOrEqual(6 * 2);
      expect(u.completion_tokens).toBeLessThan(500);
    });
  });

  describe('openai deployment (translated)', () => {
    it('messages.create and messages.stream: text and usage', async () => {
      const k = await newKey();
      const c = client(k.key);
      const msg = await c.messages.create({
        model: 'gpt-fake',
        max_tokens: 64,
        system: 'Sys',
        stop_sequences: ['END'],
        messages: [{ role: 'user', content: 'Hi' }],
      });
      expect(msg.content).toEqual([{ type: 'text', text: FAKE_TEXT }]);
      expect(msg.usage).toMatchObject({
        input_tokens: FAKE_USAGE.prompt_tokens,
        output_tokens: FAKE_USAGE.completion_tokens,
      });
      const up = openai.requests[openai.requests.length - 1].body;
      expect(up).toMatchObject({
        model: 'echo',
        max_tokens: 64,
        stop: ['END'],
        messages: [
          { role: 'system', content: 'Sys' },
          { role: 'user', content: 'Hi' },
        ],
      });
      const final = await c.messages
        .stream({ model: 'gpt-fake', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] })
        .finalMessage();
      expect(final.content).toEqual([{ type: 'text', text: FAKE_TEXT }]);
      expect(final.usage).toMatchObject({
        input_tokens: FAKE_USAGE.prompt_tokens,
        output_tokens: FAKE_USAGE.completion_tokens,
      });
      expect(await usage(k.id, 2)).toMatchObject({
        requests: 2,
        prompt_tokens: 2 * FAKE_USAGE.prompt_tokens,
      });
    });

    it('tool use round trip, streamed and not', async () => {
      const k = await newKey();
      const c = client(k.key);
      const params = {
        model: 'gpt-tools',
        max_tokens: 64,
        tools: [weather],
        messages: [{ role: 'user' as const, content: 'Paris?' }],
      };
      const first = await c.messages.create(params);
      const streamed = await c.messages.stream(params).finalMessage();
      for (const m of [first, streamed]) {
        expect(m.stop_reason).toBe('tool_use');
        expect(m.content).toEqual([
          { type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } },
        ]);
      }
      const second = await c.messages.create({
        ...params,
        messages: [
          ...params.messages,
          { role: 'assistant', content: first.content },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'Sunny' }] },
        ],
      });
      expect(second.content).toEqual([{ type: 'text', text: FAKE_TEXT }]);
      const up = openai.requests[openai.requests.length - 1].body;
      expect(up.messages.slice(1)).toEqual([
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'Sunny' },
      ]);
      expect(up.tools[0]).toEqual({
        type: 'function',
        function: { name: 'weather', description: weather.description, parameters: weather.input_schema },
      });
    });
  });

  describe('quota, auth and errors in Anthropic shape', () => {
    it("a key with a small token quota: the SDK's RateLimitError, retry-after and anthropic-ratelimit-* headers", async () => {
      const k = await newKey({ quota_limit: 10 });
      anthropic.requests.length = 0;
      const err = await client(k.key)
        .messages.create({
          model: 'claude-fake',
          max_tokens: 100,
          messages: [{ role: 'user', content: 'Hi' }],
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.RateLimitError);
      const e = err as InstanceType<typeof Anthropic.RateLimitError>;
      expect(e.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
      expect(e.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(e.headers.get('anthropic-ratelimit-tokens-limit')).toBe('10');
      expect(e.headers.get('x-ratelimit-limit-tokens')).toBe('10');
      expect(anthropic.requests).toHaveLength(0);
    });

    it('the key as x-api-key or Authorization: Bearer; a missing key is an authentication_error', async () => {
      const k = await newKey();
      const body = { model: 'mock-gpt', max_tokens: 20, messages: [{ role: 'user', content: 'Hi' }] };
      await request(gw.url).post('/v1/messages').set('x-api-key', k.key).send(body).expect(200);
      await request(gw.url)
        .post('/api/v1/messages')
        .set('authorization', `Bearer ${k.key}`)
        .send(body)
        .expect(200);
      const res = await request(gw.url).post('/v1/messages').send(body).expect(401);
      expect(res.body).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
      const err = await client('sk-not-a-key')
        .messages.create(body as Anthropic.MessageCreateParamsNonStreaming)
        .catch((x: unknown) => x);
      expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    });

    it('bad requests and unknown models: invalid_request_error, not_found_error', async () => {
      const k = await newKey();
      const noMax = await request(gw.url)
        .post('/v1/messages')
        .set('x-api-key', k.key)
        .send({ model: 'mock-gpt', messages: [{ role: 'user', content: 'Hi' }] })
        .expect(400);
      expect(noMax.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
      expect(noMax.body.error.message).toContain('max_tokens');
      const badJson = await request(gw.url)
        .post('/v1/messages')
        .set('x-api-key', k.key)
        .set('content-type', 'application/json')
        .send('{"model":')
        .expect(400);
      expect(badJson.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
      const err = await client(k.key)
        .messages.create({
          model: 'no-such-model',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'Hi' }],
        })
        .catch((x: unknown) => x);
      expect(err).toBeInstanceOf(Anthropic.NotFoundError);
      expect((err as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({
        error: { type: 'not_found_error' },
      });
    });
  });

  describe('the shared metered path (ExchangeRunner) and the messages scope', () => {
    it('a 429 falls over to the next deployment, which then rests (cooldown); the ledger names the one that served', async () => {
      const k = await newKey();
      const c = client(k.key);
      const msg = await c.messages.create({
        model: 'msg-fallover',
        max_tokens: 32,
        messages: [{ role: 'user', content: 'Hi' }],
      });
      expect(msg.content).toEqual([{ type: 'text', text: FAKE_TEXT }]);
      const final = await c.messages
        .stream({ model: 'msg-fallover', max_tokens: 32, messages: [{ role: 'user', content: 'Hi' }] })
        .finalMessage();
      expect(final.content).toEqual([{ type: 'text', text: FAKE_TEXT }]);
      await usage(k.id, 2);
      const rows = await withClient(gw.databaseUrl, async (q) =>
        (
          await q.query(
            `SELECT status, deployment, attempts FROM usage_records
              WHERE api_key_id = $1 ORDER BY created_at, id`,
            [k.id],
          )
        ).rows.map((x) => ({ ...x, attempts: Number(x.attempts) })),
      );
      // The first deployment answered 429 (Retry-After: 30): the second request does not try it.
      expect(rows).toEqual([
        { status: 'success', deployment: 'msg-fallover#1', attempts: 2 },
        { status: 'success', deployment: 'msg-fallover#1', attempts: 1 },
      ]);
      expect(openai.requests.filter((r) => r.body.model === 'ratelimit-30')).toHaveLength(1);
    });

    it('a key without the messages scope gets 403 permission_error on both routes, before anything is sent', async () => {
      const chatOnly = await newKey({ permissions: ['chat'] });
      const before = openai.requests.length + anthropic.requests.length;
      const body = { model: 'claude-fake', max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] };
      for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
        const res = await request(gw.url).post(path).set('x-api-key', chatOnly.key).send(body).expect(403);
        expect(res.body).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
        expect(res.body.error.message).toContain('messages');
      }
      expect(openai.requests.length + anthropic.requests.length).toBe(before);
      const u = await request(gw.url)
        .get(`/api/v1/api-keys/${chatOnly.id}/usage`)
        .set(auth(a.admin.token))
        .expect(200);
      expect(u.body).toMatchObject({ requests: 0 });
      const allowed = await newKey({ permissions: ['messages'] });
      const msg = await client(allowed.key).messages.create(
        body as Anthropic.MessageCreateParamsNonStreaming,
      );
      expect(msg.type).toBe('message');
    });
  });

  describe('count_tokens', () => {
    it("answers in Anthropic's shape (upstream count for anthropic models) and moves no counter", async () => {
      const k = await newKey({ quota_limit: 1000 });
      const c = client(k.key);
      const up = await c.messages.countTokens({
        model: 'claude-fake',
        messages: [{ role: 'user', content: 'Count me' }],
      });
      expect(up).toEqual({ input_tokens: ANTHROPIC_COUNT });
      expect(anthropic.requests[anthropic.requests.length - 1]).toMatchObject({
        path: '/v1/messages/count_tokens',
        headers: { 'x-api-key': UPSTREAM_SECRET },
      });
      const local = await c.messages.countTokens({
        model: 'mock-gpt',
        system: 'S',
        messages: [{ role: 'user', content: 'Count me' }],
      });
      expect(local.input_tokens).toBeGreaterThan(3);
      await new Promise((r) => setTimeout(r, 100));
      const res = await request(gw.url)
        .get(`/api/v1/api-keys/${k.id}/usage`)
        .set(auth(a.admin.token))
        .expect(200);
      expect(res.body).toMatchObject({ requests: 0, total_tokens: 0 });
    });
  });
});
