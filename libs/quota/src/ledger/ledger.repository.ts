import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { AppConfig } from '@app/config';
import { microsToDecimal } from '../pricing';
import type { LedgerRecord } from './ledger-record';

/**
 * Writes ledger batches. One statement per batch (atomic on its own): insert the rows,
 * skipping ids already there (a batch retried after a lost commit acknowledgement, or a row
 * that reached PostgreSQL by two paths: stream and journal), then add exactly the inserted
 * rows to api_keys.current_quota_usage and spend, per key.
 */
const INSERT_BATCH = `
WITH input AS (
  SELECT * FROM unnest(
    $1::uuid[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::varchar[], $7::varchar[],
    $8::int[], $9::int[], $10::numeric[], $11::varchar[], $12::int[], $13::timestamptz[],
    $14::varchar[], $15::int[], $16::int[], $17::int[]
  ) AS r(id, request_id, tenant_id, user_id, api_key_id, model, provider,
         prompt_tokens, completion_tokens, cost, status, latency_ms, created_at, deployment, attempts,
         cache_write_tokens, cache_read_tokens)
), inserted AS (
  INSERT INTO usage_records (id, request_id, tenant_id, user_id, api_key_id, model, provider,
                             prompt_tokens, completion_tokens, cost, status, latency_ms, created_at,
                             deployment, attempts, cache_write_tokens, cache_read_tokens)
  SELECT id, request_id, tenant_id, user_id, api_key_id, model, provider,
         prompt_tokens, completion_tokens, cost, status, latency_ms, created_at, deployment, attempts,
         cache_write_tokens, cache_read_tokens
  FROM input
  ON CONFLICT (id) DO NOTHING
  RETURNING tenant_id, api_key_id, prompt_tokens + completion_tokens AS tokens, cost
), per_key AS (
  SELECT tenant_id, api_key_id, sum(tokens) AS tokens, sum(cost) AS cost
  FROM inserted GROUP BY tenant_id, api_key_id
), updated AS (
  UPDATE api_keys k
     SET current_quota_usage = k.current_quota_usage + p.tokens, spend = k.spend + p.cost
    FROM per_key p
   WHERE k.id = p.api_key_id AND k.tenant_id = p.tenant_id
  RETURNING k.id
)
SELECT (SELECT count(*) FROM inserted)::int AS inserted`;

/** The client-side timeout is this much longer than statement_timeout (the server answers first). */
const CLIENT_MARGIN_MS = 2000;

/**
 * Ledger writes use a small pool of their own, with `statement_timeout` (server side) and
 * `query_timeout` (client side: a PostgreSQL that drops packets never answers), both from
 * LEDGER_QUERY_TIMEOUT_MS: a write fails in bounded time, so the shutdown flush can give up
 * and leave the rows in the journal instead of hanging. Admin queries and migrations keep
 * the main pool without these limits.
 */
@Injectable()
export class LedgerRepository implements OnApplicationShutdown {
  private pool?: Pool;

  constructor(
    private readonly dataSource: DataSource,
    private readonly config: AppConfig,
  ) {}

  private get writer(): Pool {
    if (!this.pool) {
      const url = (this.dataSource.options as { url?: string }).url;
      const timeout = this.config.LEDGER_QUERY_TIMEOUT_MS;
      this.pool = new Pool({
        connectionString: url,
        max: 2,
        connectionTimeoutMillis: Math.min(5000, timeout),
        statement_timeout: timeout,
        query_timeout: timeout + CLIENT_MARGIN_MS,
        idleTimeoutMillis: 10_000,
        allowExitOnIdle: true,
      });
      this.pool.on('error', () => undefined); // an idle client lost: the next query reconnects
    }
    return this.pool;
  }

  /** After the ledger's shutdown flush (beforeApplicationShutdown). */
  async onApplicationShutdown(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    // A connection stuck on an unanswering server must not hold the shutdown.
    if (pool)
      await Promise.race([
        pool.end().catch(() => undefined),
        new Promise((r) => setTimeout(r, 1000).unref()),
      ]);
  }

  /** Returns how many rows were new. */
  async insertBatch(rows: LedgerRecord[]): Promise<number> {
    const col = <T>(f: (r: LedgerRecord) => T) => rows.map(f);
    const result = await this.writer.query<{ inserted: number }>(INSERT_BATCH, [
      col((r) => r.id),
      col((r) => r.requestId),
      col((r) => r.tenantId),
      col((r) => r.userId),
      col((r) => r.apiKeyId),
      col((r) => r.model),
      col((r) => r.provider),
      col((r) => r.promptTokens),
      col((r) => r.completionTokens),
      col((r) => microsToDecimal(r.costMicros)),
      col((r) => r.status),
      col((r) => r.latencyMs),
      col((r) => r.createdAt.toISOString()),
      col((r) => r.deployment ?? null),
      col((r) => r.attempts ?? 1),
      col((r) => r.cacheWriteTokens ?? 0),
      col((r) => r.cacheReadTokens ?? 0),
    ]);
    return result.rows[0]?.inserted ?? 0;
  }
}
