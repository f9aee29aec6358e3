import OpenAI from 'openai';
import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { auth, createUser, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { withClient } from '../harness/servers';
import { createKey, ledgerRows } from './helpers';
import {
  FAKE_EMBEDDING_DIMENSIONS,
  FAKE_EMBEDDING_TOKENS_PER_INPUT,
  FAKE_RESPONSE_TEXT,
  FakeUpstream,
  fakeAnthropic,
  fakeOpenAi,
} from '../completions/fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from '../completions/harness';

/**
 * POST /v1/embeddings through the real gateway (PostgreSQL ledger, in-process quota store)
 * and key permissions as endpoint scopes.
 */
describe('embeddings and key scopes', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let t: TestApp;
  let a: TenantSession;

  const newKey = (body: Record<string, unknown> = {}) => createKey(t.url, a, body);
  const sdk = (key: string) => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0 });
  const ledger = async (keyId: string, n: number) =>
    (await ledgerRows(t.databaseUrl, keyId, n)).map(({ created_at: _at, ...r }) => r);

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    t = await createTestApp({
      env: {
        MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
        LEDGER_FLUSH_MS: '10',
        ...TEST_TIMEOUTS,
      },
    });
    a = await createTenantWithAdmin(t.url);
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    await anthropic.close();
  });

  describe('POST /v1/embeddings', () => {
    it('the SDK gets deterministic mock vectors, single and batch, in the requested size', async () => {
      const k = await newKey();
      const c = sdk(k.key);
      const one = await c.embeddings.create({ model: 'mock-gpt', input: 'hello world' });
      expect(one.object).toBe('list');
      expect(one.data).toHaveLength(1);
      expect(one.data[0].embedding).toHaveLength(1536);
      const norm = Math.sqrt(one.data[0].embedding.reduce((n, x) => n + x * x, 0));
      expect(norm).toBeCloseTo(1, 4);
      expect(one.usage.prompt_tokens).toBeGreaterThan(0);

      const batch = await c.embeddings.create({
        model: 'mock-gpt',
        input: ['hello world', 'something else', 'hello world'],
        dimensions: 64,
      });
      expect(batch.data.map((d) => d.index)).toEqual([0, 1, 2]);
      expect(batch.data.every((d) => d.embedding.length === 64)).toBe(true);
      expect(batch.data[0].embedding).toEqual(batch.data[2].embedding);
      expect(batch.data[0].embedding).not.toEqual(batch.data[1].embedding);
      // the same text gives the same direction at any size: the first 64 of 1536 are not reused,
      // but a second call with the same request is identical
      const again = await c.embeddings.create({ model: 'mock-gpt', input: 'hello world', dimensions: 64 });
      expect(again.data[0].embedding).toEqual(batch.data[0].embedding);

      // encoding_format float (plain HTTP) gives numbers; the SDK asked for base64 and decoded it
      const float = await request(t.url)
        .post('/v1/embeddings')
        .set(auth(k.key))
        .send({ model: 'mock-gpt', input: 'hello world', encoding_format: 'float', dimensions: 64 })
        .expect(200);
      expect(float.body.data[0].embedding).toEqual(batch.data[0].embedding);
      expect(float.headers['x-ratelimit-limit-tokens']).toBeDefined();

      const rows = await ledger(k.id, 4);
      expect(rows).toHaveLength(4);
      expect(rows.every((r) => r.provider === 'mock' && r.completion_tokens === 0)).toBe(true);
      expect(rows[0].prompt_tokens).toBe(one.usage.prompt_tokens);
      expect(rows[1].prompt_tokens).toBe(batch.usage.prompt_tokens);
    });

    it('passes openai deployments through and charges the upstream usage once, at the embedding price', async () => {
      const k = await newKey();
      const c = sdk(k.key);
      const before = openai.requests.length;
      const one = await c.embeddings.create({ model: 'embed-fake', input: 'x' });
      const batch = await c.embeddings.create({ model: 'embed-fake', input: ['a', 'b', 'c'] });
      expect(one.data[0].embedding).toHaveLength(FAKE_EMBEDDING_DIMENSIONS);
      expect(batch.data[2].embedding[0]).toBeCloseTo(0.2, 5); // base64 decoded by the SDK
      expect(batch.usage.prompt_tokens).toBe(3 * FAKE_EMBEDDING_TOKENS_PER_INPUT);
      const sent = openai.requests.slice(before);
      expect(sent.map((r) => r.path)).toEqual(['/v1/embeddings', '/v1/embeddings']);
      expect(sent[1].body).toMatchObject({
        model: 'embed-fake',
        input: ['a', 'b', 'c'],
        encoding_format: 'base64',
      });
      expect(sent[0].headers.authorization).toBe(`Bearer ${UPSTREAM_SECRET}`);

      const rows = await ledger(k.id, 2);
      expect(rows).toEqual([
        // 7 tokens x 0.5 USD per million = 3.5 micro-USD, rounded up
        {
          model: 'embed-fake',
          provider: 'openai',
          prompt_tokens: 7,
          completion_tokens: 0,
          cost_micros: 4,
          status: 'success',
        },
        {
          model: 'embed-fake',
          provider: 'openai',
          prompt_tokens: 21,
          completion_tokens: 0,
          cost_micros: 11,
          status: 'success',
        },
      ]);
    });

    it('embeddings and responses fall over like chat: one ledger row naming the serving deployment and the attempts', async () => {
      const k = await newKey();
      const c = sdk(k.key);
      const e = await c.embeddings.create({ model: 'embed-fallover', input: 'x' });
      expect(e.data[0].embedding).toHaveLength(FAKE_EMBEDDING_DIMENSIONS);
      const r = await c.responses.create({ model: 'resp-fallover', input: 'hi' });
      expect(r.output_text).toBe(FAKE_RESPONSE_TEXT);
      const events: string[] = [];
      for await (const ev of await c.responses.create({ model: 'resp-fallover', input: 'hi', stream: true }))
        events.push(ev.type);
      expect(events.at(-1)).toBe('response.completed');
      await ledger(k.id, 3);
      const rows = await withClient(t.databaseUrl, async (q) =>
        (
          await q.query(
            `SELECT model, status, deployment, attempts FROM usage_records
              WHERE api_key_id = $1 ORDER BY created_at, id`,
            [k.id],
          )
        ).rows.map((x) => ({ ...x, attempts: Number(x.attempts) })),
      );
      // The ledger's model is the upstream one. The dead deployment may already rest (cooldown)
      // for the last request: then one attempt.
      expect(rows.map(({ attempts: _a, ...x }) => x)).toEqual([
        { model: 'embed-fake', status: 'success', deployment: 'embed-fallover#1' },
        { model: 'resp-fake', status: 'success', deployment: 'resp-fallover#1' },
        { model: 'resp-fake', status: 'success', deployment: 'resp-fallover#1' },
      ]);
      expect(rows[0].attempts).toBe(2);
      expect(rows[1].attempts).toBe(2);
      expect([1, 2]).toContain(rows[2].attempts);
    });

    it('a model without embeddings is a 400 naming it, before anything is reserved or sent', async () => {
      const k = await newKey();
      const before = openai.requests.length + anthropic.requests.length;
      for (const model of ['claude-fake', 'chat-only']) {
        const res = await request(t.url)
          .post('/v1/embeddings')
          .set(auth(k.key))
          .send({ model, input: 'x' })
          .expect(400);
        expect(res.body.error).toMatchObject({
          type: 'invalid_request_error',
          code: 'unsupported_endpoint',
          param: 'model',
        });
        expect(res.body.error.message).toContain(`"${model}" does not serve embeddings`);
      }
      await request(t.url)
        .post('/v1/embeddings')
        .set(auth(k.key))
        .send({ model: 'nope', input: 'x' })
        .expect(404);
      expect(openai.requests.length + anthropic.requests.length).toBe(before);
    });

    it('refuses bad input with a 400 naming the field', async () => {
      const k = await newKey();
      for (const [body, param] of [
        [{ model: 'mock-gpt' }, 'input'],
        [{ model: 'mock-gpt', input: [] }, 'input'],
        [{ model: 'mock-gpt', input: ['ok', 3] }, 'input'],
        [{ model: 'mock-gpt', input: '' }, 'input'],
        [{ model: 'mock-gpt', input: 'x', encoding_format: 'hex' }, 'encoding_format'],
        [{ model: 'mock-gpt', input: 'x', dimensions: 0 }, 'dimensions'],
        [{ input: 'x' }, 'model'],
      ] as const) {
        const res = await request(t.url).post('/api/v1/embeddings').set(auth(k.key)).send(body).expect(400);
        expect(res.body.error.param).toBe(param);
      }
    });

    it('an upstream 4xx is passed on and charges nothing; a quota too small refuses before the upstream', async () => {
      const k = await newKey();
      const res = await request(t.url)
        .post('/v1/embeddings')
        .set(auth(k.key))
        .send({ model: 'embed-bad', input: 'x' })
        .expect(400);
      expect(res.body.error.message).toBe('bad input');
      const [row] = await ledger(k.id, 1);
      expect(row).toMatchObject({ prompt_tokens: 0, completion_tokens: 0, status: 'upstream_error' });

      const small = await newKey({ quota_limit: 5 });
      const before = openai.requests.length;
      const refused = await request(t.url)
        .post('/v1/embeddings')
        .set(auth(small.key))
        .send({ model: 'embed-fake', input: 'a rather long text that is well over five tokens' })
        .expect(429);
      expect(refused.body.error.code).toBe('tokens_quota_exceeded');
      expect(refused.headers['retry-after']).toBeDefined();
      expect(openai.requests.length).toBe(before);
    });
  });

  describe('permissions are endpoint scopes', () => {
    it('a key with ["embeddings"] is refused on chat and models (403) and served on embeddings', async () => {
      const k = await newKey({ permissions: ['embeddings'] });
      expect(k.scopes).toEqual(['embeddings']);
      const chat = await request(t.url)
        .post('/v1/chat/completions')
        .set(auth(k.key))
        .send({ model: 'gpt-fake', messages: [{ role: 'user', content: 'hi' }] })
        .expect(403);
      expect(chat.body.error).toMatchObject({ type: 'permission_error', code: 'scope_not_allowed' });
      expect(chat.headers['x-ratelimit-limit-requests']).toBeUndefined(); // refused before admission
      await request(t.url).get('/v1/models').set(auth(k.key)).expect(403);
      await request(t.url)
        .post('/v1/embeddings')
        .set(auth(k.key))
        .send({ model: 'mock-gpt', input: 'x' })
        .expect(200);
      const rows = await ledger(k.id, 1);
      expect(rows).toHaveLength(1); // the refused chat left no row
      expect(rows[0].completion_tokens).toBe(0);
    });

    it('refuses unknown scope names at create, patch and the generate alias', async () => {
      for (const permissions of [['read'], ['chat', 'write'], 'chat']) {
        const res = await request(t.url)
          .post('/api/v1/api-keys')
          .set(auth(a.admin.token))
          .send({ name: 'x', permissions })
          .expect(400);
        expect(res.body.error.type).toBe('invalid_request_error');
      }
      await request(t.url)
        .post('/auth/key/generate')
        .set(auth(a.admin.token))
        .send({ name: 'x', permissions: ['admin'] })
        .expect(400);
      const gen = await request(t.url)
        .post('/auth/key/generate')
        .set(auth(a.admin.token))
        .send({ name: 'x', permissions: ['chat', 'models'] })
        .expect(201);
      expect(gen.body).toMatchObject({
        permissions: ['chat', 'models'],
        scopes: ['chat', 'models'],
        ignored_permissions: [],
      });
      const k = await newKey();
      await request(t.url)
        .patch(`/api/v1/api-keys/${k.id}`)
        .set(auth(a.admin.token))
        .send({ permissions: ['bogus'] })
        .expect(400);
    });

    it('a patch takes effect at once (caches evicted); members cannot change permissions', async () => {
      const k = await newKey();
      const embed = () =>
        request(t.url).post('/v1/embeddings').set(auth(k.key)).send({ model: 'mock-gpt', input: 'x' });
      await embed().expect(200);
      const patched = await request(t.url)
        .patch(`/api/v1/api-keys/${k.id}`)
        .set(auth(a.admin.token))
        .send({ permissions: ['chat'] })
        .expect(200);
      expect(patched.body.scopes).toEqual(['chat']);
      await embed().expect(403);
      await request(t.url)
        .patch(`/api/v1/api-keys/${k.id}`)
        .set(auth(a.admin.token))
        .send({ permissions: [] })
        .expect(200);
      await embed().expect(200);

      const member = await createUser(t.url, a.tenantId, 'member');
      const own = await request(t.url)
        .post('/api/v1/api-keys')
        .set(auth(member.token))
        .send({ name: 'm' })
        .expect(201);
      const refused = await request(t.url)
        .patch(`/api/v1/api-keys/${own.body.id}`)
        .set(auth(member.token))
        .send({ permissions: ['chat'] })
        .expect(403);
      expect(refused.body.error.code).toBe('limits_admin_only');
    });

    it('a legacy key holding ["read", "write"] still completes chats, and its API record says the names restrict nothing', async () => {
      const k = await newKey();
      await withClient(t.databaseUrl, (c) =>
        c.query(`UPDATE api_keys SET permissions = '["read", "write"]' WHERE id = $1`, [k.id]),
      );
      const chat = await sdk(k.key).chat.completions.create({
        model: 'mock-gpt',
        messages: [{ role: 'user', content: 'still works' }],
      });
      expect(chat.choices[0].message.content).toContain('still works');
      await request(t.url)
        .post('/v1/embeddings')
        .set(auth(k.key))
        .send({ model: 'mock-gpt', input: 'x' })
        .expect(200);
      const rec = await request(t.url).get(`/api/v1/api-keys/${k.id}`).set(auth(a.admin.token)).expect(200);
      expect(rec.body).toMatchObject({
        permissions: ['read', 'write'],
        scopes: null,
        ignored_permissions: ['read', 'write'],
      });
      const me = await request(t.url).get('/v1/key/info').set(auth(k.key)).expect(200);
      expect(me.body.scopes).toBeNull();
    });
  });

  it('GET /v1/models lists the endpoints each model serves', async () => {
    const k = await newKey();
    const models = await sdk(k.key).models.list();
    const byId = new Map(models.data.map((m) => [m.id, m as unknown as { endpoints: string[] }]));
    expect(byId.get('mock-gpt')?.endpoints).toEqual(['chat', 'embeddings', 'responses']);
    expect(byId.get('claude-fake')?.endpoints).toEqual(['chat']);
    expect(byId.get('embed-fake')?.endpoints).toEqual(['embeddings']);
    expect(byId.get('gpt-fake')?.endpoints).toEqual(['chat', 'embeddings', 'responses']);
  });
});
