import { Test } from '@nestjs/testing';
import { createServer, Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppConfig, ConfigModule, loadConfig } from '@app/config';
import {
  Admission,
  assertModelAllowed,
  CompletionCaller,
  CompletionsService,
  DeploymentRouter,
  ExchangeRunner,
  loadRoutingTable,
  MeteredUsage,
  ProviderRegistry,
  RoutingTable,
  UsageEstimate,
  UsageMeta,
  UsageMeter,
} from '@app/completions';
import { RedisConnection } from '@app/database';
import { ApiError, MetricsService, ReadinessRegistry, toErrorResponse } from '@app/observability';
import type Redis from 'ioredis';
import { freePort } from '../harness/servers';

export const UPSTREAM_SECRET = 'sk-upstream-test-secret-do-not-leak';

/** Records every call; checks allowed models like every meter; `refuse` makes admit throw. */
export class RecordingMeter extends UsageMeter {
  admitted: { caller: CompletionCaller; estimate: UsageEstimate }[] = [];
  settled: { reservation: unknown; usage: MeteredUsage; meta: UsageMeta }[] = [];
  released: { reservation: unknown; meta: UsageMeta }[] = [];
  refuse?: ApiError;
  /** The grant admit answers (default: what was wanted, else 1000). */
  grant?: number;
  private n = 0;

  admit(caller: CompletionCaller, estimate: UsageEstimate): Admission {
    assertModelAllowed(caller.allowedModels, estimate.model);
    if (this.refuse) throw this.refuse;
    this.admitted.push({ caller, estimate });
    const granted = this.grant ?? estimate.wanted ?? estimate.maxOutputTokens ?? 1000;
    return {
      reservation: { id: ++this.n },
      headers: { 'x-ratelimit-remaining-tokens': '999' },
      grantedCompletionTokens: granted,
    };
  }
  settle(reservation: unknown, usage: MeteredUsage, meta: UsageMeta): void {
    this.settled.push({ reservation, usage, meta });
  }
  release(reservation: unknown, meta: UsageMeta): void {
    this.released.push({ reservation, meta });
  }
  reset(): void {
    this.admitted = [];
    this.settled = [];
    this.released = [];
    this.refuse = undefined;
    this.grant = undefined;
  }
  /** The n-th settle or release (1-based), waiting for it: they happen after the answer is sent. */
  async nth(kind: 'settled' | 'released', n = 1, timeoutMs = 3000): Promise<any> {
    const until = Date.now() + timeoutMs;
    while (this[kind].length < n) {
      if (Date.now() > until) throw new Error(`expected ${n} ${kind}, got ${this[kind].length}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this[kind][n - 1];
  }
}

/** A routing table over the fake upstreams (and one dead port), written to a temp file. */
export async function writeModelsFile(openaiUrl: string, anthropicUrl: string): Promise<string> {
  const dead = `http://127.0.0.1:${await freePort()}/v1`;
  const price = { input_per_million: 1, output_per_million: 2 };
  const openai = (model: string, baseUrl = `${openaiUrl}/v1`) => ({
    provider: 'openai',
    model,
    base_url: baseUrl,
    api_key_env: 'FAKE_UPSTREAM_KEY',
    pricing: price,
  });
  const anthropic = (model: string) => ({
    provider: 'anthropic',
    model,
    base_url: anthropicUrl,
    api_key_env: 'FAKE_UPSTREAM_KEY',
    pricing: { input_per_million: 3, output_per_million: 15 },
  });
  const one = (d: object, aliases: string[] = []) => ({ aliases, deployments: [d] });
  const doc = {
    models: {
      'gpt-fake': one(openai('echo'), ['gpt-fake-alias']),
      'gpt-no-usage': one(openai('no-usage')),
      'gpt-ignores-options': one(openai('ignores-stream-options')),
      'gpt-fallback': { deployments: [openai('fail-503'), openai('echo')] },
      'gpt-refused-fallback': { deployments: [openai('echo', dead), openai('echo')] },
      'gpt-503': one(openai('fail-503')),
      'gpt-refused': one(openai('echo', dead)),
      'gpt-400': { deployments: [openai('fail-400'), openai('echo')] },
      'gpt-429': one(openai('fail-429')),
      'gpt-401': one(openai('fail-401')),
      'gpt-hang': { deployments: [openai('hang'), openai('echo')] },
      'gpt-slow': one(openai('slow-stream')),
      'gpt-paced': one(openai('paced-stream')),
      'gpt-flood': one(openai('flood')),
      'gpt-die': one(openai('die-mid-stream')),
      'gpt-hang-mid': one(openai('hang-mid-stream')),
      'gpt-runaway': one(openai('runaway')),
      'gpt-accept-hang': one(openai('accept-then-hang')),
      'gpt-capped': one({ ...openai('echo'), max_output_tokens: 700 }),
      'claude-fake': one(anthropic('claude-fake')),
      'claude-tools': one(anthropic('claude-tools')),
      'claude-overloaded': one(anthropic('claude-overloaded')),
      'claude-bad': one(anthropic('claude-bad')),
      'claude-error-mid-stream': one(anthropic('claude-error-mid-stream')),
      'gpt-tools': one(openai('tool-caller')),
      'gpt-cached': one({ ...openai('cached'), pricing: { ...price, cache_read_per_million: 0.5 } }),
      'claude-slow': one(anthropic('claude-slow')),
      'claude-runaway': one(anthropic('claude-runaway')),
      'claude-cache': one({
        ...anthropic('claude-cache'),
        pricing: {
          input_per_million: 3,
          output_per_million: 15,
          cache_write_per_million: 3.75,
          cache_read_per_million: 0.3,
        },
      }),
      'mock-gpt': { aliases: ['gpt-4o-mini'], deployments: [{ provider: 'mock', pricing: price }] },
      'embed-fake': one({
        ...openai('embed-fake'),
        pricing: { ...price, embedding_per_million: 0.5 },
        endpoints: ['embeddings'],
      }),
      'embed-bad': one(openai('embed-bad')),
      'chat-only': one({ ...openai('echo'), endpoints: ['chat'] }),
      'resp-fake': one(openai('resp-fake')),
      'resp-bad': one(openai('resp-bad')),
      'resp-die': one(openai('resp-die-mid-stream')),
      // Embeddings and responses share chat's attempt loop: the first deployment refuses connections.
      'embed-fallover': {
        deployments: [openai('embed-fake', dead), openai('embed-fake')].map((d) => ({
          ...d,
          pricing: { ...price, embedding_per_million: 0.5 },
          endpoints: ['embeddings'],
        })),
      },
      'resp-fallover': { deployments: [openai('resp-fake', dead), openai('resp-fake')] },
      // /v1/messages on the same loop: the first answers 429 (Retry-After 30 s), then rests.
      'msg-fallover': { deployments: [openai('ratelimit-30'), openai('echo')] },
    },
  };
  const file = join(mkdtempSync(join(tmpdir(), 'gw-models-')), 'models.json');
  writeFileSync(file, JSON.stringify(doc, null, 2));
  return file;
}

/** Timeouts short enough for tests, long enough for loopback. */
export const TEST_TIMEOUTS = {
  UPSTREAM_CONNECT_TIMEOUT_MS: '1000',
  UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '600',
  UPSTREAM_STREAM_IDLE_TIMEOUT_MS: '600',
  UPSTREAM_TOTAL_TIMEOUT_MS: '5000',
};

export interface ServiceHarness {
  url: string;
  service: CompletionsService;
  router: DeploymentRouter;
  metrics: MetricsService;
  readiness: ReadinessRegistry;
  meter: RecordingMeter;
  config: AppConfig;
  close(): Promise<void>;
}

/**
 * The completions service behind a bare node:http server standing in for the controller
 * (the caller's allowed models come from an `x-allowed-models` header): the service, the
 * providers and the fake upstreams, with no database.
 */
export async function serviceHarness(
  modelsFile: string,
  env: Record<string, string> = {},
  /** Share deployment health through this Redis (as with REDIS_URL). */
  redis?: Redis,
): Promise<ServiceHarness> {
  process.env.FAKE_UPSTREAM_KEY = UPSTREAM_SECRET;
  const config = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-completions-')),
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    MODELS_FILE: modelsFile,
    QUOTA_DEFAULT_MAX_TOKENS: '1000',
    ...TEST_TIMEOUTS,
    ...env,
  });
  const meter = new RecordingMeter();
  const moduleRef = await Test.createTestingModule({
    imports: [ConfigModule.forRoot(config)],
    providers: [
      { provide: RoutingTable, useValue: loadRoutingTable(config.MODELS_FILE) },
      ProviderRegistry,
      DeploymentRouter,
      ExchangeRunner,
      CompletionsService,
      MetricsService,
      ReadinessRegistry,
      { provide: UsageMeter, useValue: meter },
      ...(redis ? [{ provide: RedisConnection, useValue: { client: redis } }] : []),
    ],
  }).compile();
  moduleRef.enableShutdownHooks();
  await moduleRef.init();
  const service = moduleRef.get(CompletionsService);
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const allowed = req.headers['x-allowed-models'];
      const unlimited = { tokenLimit: null, budgetUsd: null, period: 'none' as const, rateLimitTpm: null };
      const caller: CompletionCaller = {
        kind: 'api-key',
        tenantId: 't-1',
        userId: 'u-1',
        apiKeyId: 'k-1',
        keyName: 'test',
        keyPrefix: 'sk-test',
        allowedModels: typeof allowed === 'string' ? allowed.split(',').filter(Boolean) : null,
        rateLimitRpm: null,
        scopes: null,
        limits: { tenant: unlimited, user: null, key: unlimited },
      };
      const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'GET') return reply(200, service.listModels(caller));
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        return reply(400, { error: { message: 'bad json' } });
      }
      service.chat(caller, body, res, 'req-test').catch((e: unknown) => {
        if (res.headersSent) return void res.end();
        const r = toErrorResponse(e);
        reply(r.status, r.body, r.headers);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    service,
    router: moduleRef.get(DeploymentRouter),
    metrics: moduleRef.get(MetricsService),
    readiness: moduleRef.get(ReadinessRegistry),
    meter,
    config,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await moduleRef.close();
    },
  };
}

/** Reads an SSE response body into its `data:` payloads. */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6));
}
