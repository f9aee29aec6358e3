import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { countPromptTokens, costMicros, validateChatRequest } from '@app/completions';
import { loadConfig } from '@app/config';
import { dataSourceOptions, EmbeddedPostgres } from '@app/database';
import { levelRef, QuotaLevel, QuotaPeriod } from '@app/quota';
import { MASTER_KEY } from '../harness/app';
import { GatewayProcess, startGateway } from '../harness/gateway-process';
import { dbUrl, startPostgres, startRedis, withClient } from '../harness/servers';
import { call } from './client';

/** The model of the load runs: one OpenAI-compatible deployment on the fake upstream. */
export const MODEL = 'rel-gpt';
export const PRICING = { inputPerMillion: 2, outputPerMillion: 4 };

export function writeModelsFile(upstreamUrl: string): string {
  const doc = {
    models: {
      [MODEL]: {
        deployments: [
          {
            provider: 'openai',
            model: MODEL,
            base_url: `${upstreamUrl}/v1`,
            pricing: {
              input_per_million: PRICING.inputPerMillion,
              output_per_million: PRICING.outputPerMillion,
            },
            max_connections: 1024,
            // a hung non-streamed answer ends here (504), not at the 20 s total
            timeouts: { total_ms: 5000 },
          },
        ],
      },
    },
  };
  const file = join(mkdtempSync(join(tmpdir(), 'gw-rel-models-')), 'models.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

/** A private PostgreSQL (so it can be stopped) with the schema migrated. */
export async function privatePostgres(): Promise<{ pg: EmbeddedPostgres; url: string }> {
  const started = await startPostgres();
  await withClient(started.adminUrl, (c) => c.query('CREATE DATABASE reliability'));
  const url = dbUrl(started.adminUrl, 'reliability');
  const config = loadConfig({
    DATA_DIR: '/tmp/gw-test-config',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
  });
  const ds = new DataSource(dataSourceOptions(config, url));
  await ds.initialize();
  await ds.runMigrations({ transaction: 'each' });
  await ds.destroy();
  return { pg: started.pg, url };
}

export { startRedis };
export type RedisServer = { proc: ChildProcess; url: string; port: number };

/** Gateway settings of the load runs (short timeouts so faults resolve within a phase). */
export const GATEWAY_ENV = {
  LOG_LEVEL: 'warn',
  LEDGER_FLUSH_MS: '200',
  // at least UPSTREAM_TOTAL_TIMEOUT_MS + 5 s (refused at start otherwise): a request never outlives its reservation
  QUOTA_RESERVATION_TTL_SECONDS: '25',
  QUOTA_DEFAULT_MAX_TOKENS: '100',
  UPSTREAM_CONNECT_TIMEOUT_MS: '3000',
  UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '4000',
  UPSTREAM_TOTAL_TIMEOUT_MS: '20000',
  ROUTING_COOLDOWN_MS: '1000',
  AUTH_FAILURE_LIMIT: '1000000',
  LOGIN_ACCOUNT_LIMIT: '1000000',
  LOGIN_ADDRESS_LIMIT: '1000000',
  SHUTDOWN_GRACE_MS: '2000',
};

export async function startGateways(n: number, env: Record<string, string>): Promise<GatewayProcess[]> {
  return Promise.all(Array.from({ length: n }, () => startGateway({ ...GATEWAY_ENV, ...env })));
}

/** The admin API with the master key (acting in `tenantId` when given). */
export async function admin(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  tenantId?: string,
): Promise<any> {
  const res = await call(method, `${base}${path}`, body, {
    authorization: `Bearer ${MASTER_KEY}`,
    ...(tenantId ? { 'x-tenant-id': tenantId } : {}),
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
  return res.text ? JSON.parse(res.text) : null;
}

export interface Limits {
  quota_limit?: number | null;
  max_budget?: number | null;
  quota_period?: QuotaPeriod;
  rate_limit_rpm?: number | null;
}

export interface KeyRef {
  tenantId: string;
  userId: string;
  keyId: string;
  key: string;
  period: QuotaPeriod;
}

const uniq = () => randomBytes(4).toString('hex');

export async function newTenant(
  base: string,
  limits: Limits = {},
): Promise<{ id: string; period: QuotaPeriod }> {
  const t = await admin(base, 'POST', '/api/v1/tenants', { name: `rel-${uniq()}`, ...limits });
  return { id: t.id, period: t.quota_period };
}

export async function newUser(
  base: string,
  tenantId: string,
  limits: Limits = {},
): Promise<{ id: string; period: QuotaPeriod }> {
  const u = await admin(
    base,
    'POST',
    '/api/v1/users',
    { email: `rel-${uniq()}@example.test`, password: `pw-${uniq()}-${uniq()}`, role: 'member', ...limits },
    tenantId,
  );
  return { id: u.id, period: u.quota_period };
}

export async function newKey(
  base: string,
  tenantId: string,
  userId: string,
  limits: Limits = {},
): Promise<KeyRef> {
  const k = await admin(
    base,
    'POST',
    '/api/v1/api-keys',
    { name: `k-${uniq()}`, user_id: userId, ...limits },
    tenantId,
  );
  return { tenantId, userId, keyId: k.id, key: k.key, period: k.quota_period };
}

/** Loads each key into both instances' caches (GET /v1/models costs no quota). */
export async function warm(bases: string[], keys: KeyRef[]): Promise<void> {
  for (const base of bases)
    await Promise.all(
      keys.map(async (k) => {
        const r = await call('GET', `${base}/v1/models`, undefined, { authorization: `Bearer ${k.key}` });
        if (r.status !== 200) throw new Error(`warm ${k.keyId}: ${r.status} ${r.text}`);
      }),
    );
}

export const PROMPT = [{ role: 'user', content: 'Count the tokens of this prompt, please.' }];

/**
 * A chat body and what the gateway reserves for it: tokens = prompt estimate + max_tokens,
 * cost = priced at the deployment's prices. `actual` (what the fake upstream reports) is
 * chosen relative to the reservation.
 */
export function chatBody(o: {
  maxTokens: number;
  stream: boolean;
  extraCompletion?: number;
  promptShort?: number;
  x?: object;
}) {
  const req = { model: MODEL, messages: PROMPT, max_tokens: o.maxTokens };
  const promptEst = countPromptTokens(validateChatRequest(req));
  const reserved = { tokens: promptEst + o.maxTokens, micros: costMicros(PRICING, promptEst, o.maxTokens) };
  const prompt = promptEst - (o.promptShort ?? 0);
  // asked for extraCompletion more (or fewer) than max_tokens; the fake honours the cap sent
  const completion = Math.min(o.maxTokens, o.maxTokens + (o.extraCompletion ?? 0));
  const actual = { tokens: prompt + completion, micros: costMicros(PRICING, prompt, completion) };
  const body = {
    ...req,
    ...(o.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    x_fake: { prompt_tokens: prompt, completion_tokens: o.maxTokens + (o.extraCompletion ?? 0), ...o.x },
  };
  return { body, reserved, actual };
}

/** usage_records straight from PostgreSQL. */
export async function sql<T = any>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

export interface LedgerRow {
  request_id: string;
  api_key_id: string;
  user_id: string;
  tenant_id: string;
  tokens: number;
  micros: number;
  status: string;
  created_ms: number;
  latency_ms: number;
}

export async function ledgerRows(url: string, tenantIds: string[]): Promise<LedgerRow[]> {
  const rows = await sql(
    url,
    `SELECT request_id, api_key_id, user_id, tenant_id, prompt_tokens + completion_tokens AS tokens,
            (cost * 1000000)::bigint AS micros, status,
            (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, coalesce(latency_ms, 0) AS latency_ms
       FROM usage_records WHERE tenant_id = ANY($1::uuid[])`,
    [tenantIds],
  );
  return rows.map((r) => ({
    ...r,
    tokens: Number(r.tokens),
    micros: Number(r.micros),
    created_ms: Number(r.created_ms),
    latency_ms: Number(r.latency_ms),
  }));
}

/** A level's Redis counters (tokens, micro-dollars), as `redis-cli GET` shows them. */
export async function counters(
  redis: Redis,
  level: QuotaLevel,
  ids: { tenantId: string; userId: string | null; apiKeyId: string },
  period: QuotaPeriod,
): Promise<{ tokens: number; micros: number }> {
  const ref = levelRef(level, ids, { period }, Date.now(), 'UTC');
  const [t, s] = await Promise.all([redis.get(ref.tokensKey), redis.get(ref.spendKey)]);
  return { tokens: Number(t ?? 0), micros: Number(s ?? 0) };
}

/** gateway_ledger_queue_depth of an instance (its unwritten ledger rows). */
export async function ledgerDepth(base: string): Promise<number> {
  const { text } = await call('GET', `${base}/metrics`);
  const m = /^gateway_ledger_queue_depth (\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}
