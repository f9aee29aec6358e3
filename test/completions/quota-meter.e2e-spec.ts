import 'reflect-metadata';
import { DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import OpenAI from 'openai';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiKeysModule } from '@app/api-keys';
import { AuthModule } from '@app/auth';
import { CompletionsModule } from '@app/completions';
import { AppConfig, ConfigModule, loadConfig } from '@app/config';
import { DatabaseModule, RedisConnectionModule } from '@app/database';
import { ObservabilityModule } from '@app/observability';
import { QuotaModule, QuotaService } from '@app/quota';
import { TenancyModule } from '@app/tenancy';
import { configureApp } from '../../apps/gateway/src/setup';
import { createDatabase, JWT_SECRET, MASTER_KEY } from '../harness/app';
import { auth, createTenantWithAdmin, TenantSession } from '../harness/factories';
import { FakeUpstream, fakeAnthropic, fakeOpenAi } from './fake-upstreams';
import { TEST_TIMEOUTS, UPSTREAM_SECRET, writeModelsFile } from './harness';

/** AppModule's libs, with completions charging through the quota lib's QuotaService. */
@Module({})
class QuotaMeteredAppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: QuotaMeteredAppModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule,
        DatabaseModule,
        RedisConnectionModule.forRoot(config),
        TenancyModule,
        AuthModule,
        QuotaModule,
        ApiKeysModule,
        CompletionsModule.forRoot({ meter: QuotaService, imports: [QuotaModule] }),
      ],
    };
  }
}

/**
 * The UsageMeter contract against the real QuotaService (in-process store, PostgreSQL
 * ledger): what the lead's binding in AppModule will do.
 */
describe('completions charged through QuotaService', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let app: NestExpressApplication;
  let url: string;
  let a: TenantSession;

  const newKey = async (body: Record<string, unknown> = {}) => {
    const res = await request(url)
      .post('/api/v1/api-keys')
      .set(auth(a.admin.token))
      .send({ name: 'k', ...body })
      .expect(201);
    return res.body as { id: string; key: string };
  };
  const usageOf = async (id: string) => {
    // the ledger is written in batches every LEDGER_FLUSH_MS
    for (let i = 0; ; i++) {
      const res = await request(url).get(`/api/v1/api-keys/${id}/usage`).set(auth(a.admin.token)).expect(200);
      if (res.body.requests > 0 || i > 100) return res.body;
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeAll(async () => {
    openai = await fakeOpenAi();
    anthropic = await fakeAnthropic();
    process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
    const config = loadConfig({
      NODE_ENV: 'test',
      DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-test-data-')),
      DATABASE_URL: await createDatabase(),
      MASTER_KEY,
      JWT_SECRET,
      BCRYPT_ROUNDS: '4',
      LOG_LEVEL: 'silent',
      BOOTSTRAP_ADMIN: 'false',
      LEDGER_FLUSH_MS: '10',
      MODELS_FILE: await writeModelsFile(openai.url, anthropic.url),
      ...TEST_TIMEOUTS,
    });
    app = await NestFactory.create<NestExpressApplication>(QuotaMeteredAppModule.forRoot(config), {
      bodyParser: false,
      logger: false,
    });
    configureApp(app, config);
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    a = await createTenantWithAdmin(url);
  });
  afterAll(async () => {
    await app.close();
    await openai.close();
    await anthropic.close();
  });

  it('streamed and unstreamed exchanges land in the ledger with the same charge', async () => {
    const [plain, streamed] = [await newKey(), await newKey()];
    const messages = [{ role: 'user' as const, content: 'Charge me' }];
    const c = await new OpenAI({
      baseURL: `${url}/v1`,
      apiKey: plain.key,
      maxRetries: 0,
    }).chat.completions.create({
      model: 'gpt-no-usage',
      messages,
    });
    const s = await new OpenAI({
      baseURL: `${url}/v1`,
      apiKey: streamed.key,
      maxRetries: 0,
    }).chat.completions.create({
      model: 'gpt-no-usage',
      messages,
      stream: true,
    });
    for await (const _ of s) void _;
    const [u1, u2] = [await usageOf(plain.id), await usageOf(streamed.id)];
    expect(u1).toMatchObject({
      requests: 1,
      prompt_tokens: c.usage!.prompt_tokens,
      completion_tokens: c.usage!.completion_tokens,
    });
    expect(u2).toMatchObject({
      requests: 1,
      prompt_tokens: u1.prompt_tokens,
      completion_tokens: u1.completion_tokens,
      cost_usd: u1.cost_usd,
    });
    expect(u1.cost_usd).toBeGreaterThan(0);
  });

  it('the x-ratelimit-* headers of the admission reach the client', async () => {
    const k = await newKey({ quota_limit: 100000 });
    const res = await request(url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${k.key}`)
      .send({ model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }] })
      .expect(200);
    expect(Object.keys(res.headers).some((h) => h.startsWith('x-ratelimit-'))).toBe(true);
  });

  it('a quota too small for the reservation: 429 before any upstream call', async () => {
    const k = await newKey({ quota_limit: 10 });
    openai.requests.length = 0;
    const res = await request(url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${k.key}`)
      .send({ model: 'gpt-fake', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 })
      .expect(429);
    expect(res.body.error.type).toBe('insufficient_quota');
    expect(openai.requests).toHaveLength(0);
  });

  it('a client disconnect mid-stream is charged the partial output', async () => {
    const k = await newKey();
    const ac = new AbortController();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${k.key}` },
      body: JSON.stringify({ model: 'gpt-slow', messages: [{ role: 'user', content: 'Hi' }], stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    let got = '';
    while (!got.includes('"w3 "')) got += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    await openai.abortedFor('slow-stream');
    const u = await usageOf(k.id);
    expect(u.requests).toBe(1);
    expect(u.completion_tokens).toBeGreaterThanOrEqual(4);
    expect(u.completion_tokens).toBeLessThan(500);
  });

  it('one ledger row per client request, naming the deployment that answered and counting the attempts', async () => {
    const k = await newKey();
    // gpt-fallback: the first deployment answers 503 (retried twice), the second serves
    await request(url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${k.key}`)
      .send({ model: 'gpt-fallback', messages: [{ role: 'user', content: 'Hi' }] })
      .expect(200);
    await usageOf(k.id);
    const rows = await app
      .get(DataSource)
      .query(`SELECT deployment, attempts, status FROM usage_records WHERE api_key_id = $1`, [k.id]);
    expect(rows).toEqual([{ deployment: 'gpt-fallback#1', attempts: 4, status: 'success' }]);
  });

  it('a failed upstream releases the reservation: a zero-usage ledger row', async () => {
    const k = await newKey();
    await request(url)
      .post('/v1/chat/completions')
      .set('Authorization', `Bearer ${k.key}`)
      .send({ model: 'gpt-503', messages: [{ role: 'user', content: 'Hi' }] })
      .expect(502);
    expect(await usageOf(k.id)).toMatchObject({ requests: 1, total_tokens: 0, cost_usd: 0 });
  });
});
