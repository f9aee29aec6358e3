import 'reflect-metadata';
import { NestExpressApplication } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { AppConfig, loadConfig } from '@app/config';
import { RedisConnection } from '@app/database';
import {
  LedgerService,
  ManualClock,
  QuotaClock,
  QuotaLimits,
  QuotaService,
  QuotaStore,
  QuotaSubject,
  ReconciliationService,
} from '@app/quota';
import { AppModule } from '../../apps/gateway/src/app.module';
import { configureApp } from '../../apps/gateway/src/setup';
import { JWT_SECRET, MASTER_KEY } from '../harness/app';

/** One gateway instance (the real AppModule, HTTP on a loopback port) with handles on the quota lib. */
export interface Instance {
  app: NestExpressApplication;
  url: string;
  config: AppConfig;
  quota: QuotaService;
  ledger: LedgerService;
  reconciliation: ReconciliationService;
  store: QuotaStore;
  close(): Promise<void>;
}

export interface InstanceOptions {
  databaseUrl: string;
  redisUrl?: string;
  clock?: QuotaClock;
  env?: Record<string, string>;
}

/** As createTestApp (harness/app.ts), plus an overridable quota clock. */
export async function startInstance(o: InstanceOptions): Promise<Instance> {
  const config = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-quota-data-')),
    DATABASE_URL: o.databaseUrl,
    MASTER_KEY,
    JWT_SECRET,
    BCRYPT_ROUNDS: '4',
    LOG_LEVEL: 'silent',
    BOOTSTRAP_ADMIN: 'false',
    ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}),
    ...o.env,
  });
  let builder = Test.createTestingModule({ imports: [AppModule.forRoot(config)] });
  if (o.clock) builder = builder.overrideProvider(QuotaClock).useValue(o.clock);
  const moduleRef = await builder.compile();
  const app = moduleRef.createNestApplication<NestExpressApplication>({
    bodyParser: false,
    logger: false,
    bufferLogs: true,
  });
  configureApp(app, config);
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    config,
    quota: app.get(QuotaService),
    ledger: app.get(LedgerService),
    reconciliation: app.get(ReconciliationService),
    store: app.get(QuotaStore),
    close: async () => {
      // @nestjs-modules/ioredis quits connections from a static set that the first app to
      // shut down clears: with several apps in one process the others would stay open.
      const client = app.get(RedisConnection).client;
      await app.close();
      if (client && client.status !== 'end') client.disconnect();
    },
  };
}

/** A settable clock near real time (Redis expires period counters by wall time). */
export const manualClock = (t = Date.now()) => new ManualClock(t);

export async function sql<T = Record<string, unknown>>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

type Limits = Partial<{ quota_limit: number | null; max_budget: number | null; quota_period: string }>;
const lim = (l: Limits = {}) => [l.quota_limit ?? null, l.max_budget ?? null, l.quota_period ?? 'none'];

/** Rows straight in PostgreSQL: the quota lib reads limits from them (and writes usage into api_keys). */
export async function insertTenant(url: string, l?: Limits, id: string = randomUUID()): Promise<string> {
  const [r] = await sql<{ id: string }>(
    url,
    `INSERT INTO tenants (id, name, quota_limit, max_budget, quota_period) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
    [id, `quota-${randomBytes(4).toString('hex')}`, ...lim(l)],
  );
  return r.id;
}

export async function insertUser(
  url: string,
  tenantId: string,
  l?: Limits,
  role = 'member',
): Promise<string> {
  const [r] = await sql<{ id: string }>(
    url,
    `INSERT INTO users (tenant_id, email, role, quota_limit, max_budget, quota_period) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
    [tenantId, `u-${randomBytes(4).toString('hex')}@example.test`, role, ...lim(l)],
  );
  return r.id;
}

export async function insertKey(
  url: string,
  tenantId: string,
  userId: string | null,
  l?: Limits,
): Promise<string> {
  const [r] = await sql<{ id: string }>(
    url,
    `INSERT INTO api_keys (tenant_id, user_id, name, key_hash, key_prefix, quota_limit, max_budget, quota_period)
     VALUES ($1, $2, $3, 'x', $4, $5, $6, $7) RETURNING id`,
    [tenantId, userId, `key-${randomUUID().slice(0, 8)}`, `sk-${randomBytes(3).toString('hex')}`, ...lim(l)],
  );
  return r.id;
}

export const unlimited: QuotaLimits = { tokenLimit: null, budgetUsd: null, period: 'none' };

export function subjectOf(
  ids: { tenantId: string; userId: string | null; apiKeyId: string },
  limits: Partial<QuotaSubject['limits']> = {},
  extra: Partial<QuotaSubject> = {},
): QuotaSubject {
  return {
    ...ids,
    rateLimitRpm: null,
    allowedModels: null,
    ...extra,
    limits: { tenant: unlimited, user: ids.userId ? unlimited : null, key: unlimited, ...limits },
  };
}

/** Ledger sums straight from usage_records. */
export async function ledgerSums(
  url: string,
  where: { tenantId: string; userId?: string; apiKeyId?: string },
): Promise<{ rows: number; tokens: number; micros: number }> {
  const params: unknown[] = [where.tenantId];
  let w = 'tenant_id = $1';
  if (where.userId) {
    params.push(where.userId);
    w += ` AND user_id = $${params.length}`;
  }
  if (where.apiKeyId) {
    params.push(where.apiKeyId);
    w += ` AND api_key_id = $${params.length}`;
  }
  const [r] = await sql<{ rows: string; tokens: string; micros: string }>(
    url,
    `SELECT count(*) AS rows, coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens,
            (coalesce(sum(cost), 0) * 1000000)::bigint AS micros FROM usage_records WHERE ${w}`,
    params,
  );
  return { rows: Number(r.rows), tokens: Number(r.tokens), micros: Number(r.micros) };
}
