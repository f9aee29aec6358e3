import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { QuotaLevel, QuotaPeriod } from '../quota.types';

export interface Sums {
  tokens: number;
  costMicros: number;
}

export interface PeriodOwner {
  id: string;
  quotaPeriod: QuotaPeriod;
}

export interface KeyOwner extends PeriodOwner {
  userId: string | null;
}

export interface KeyLimitsRow extends KeyOwner {
  name: string;
  quotaLimit: number | null;
  maxBudget: number | null;
}

export interface TenantLimitsRow extends PeriodOwner {
  name: string;
  quotaLimit: number | null;
  maxBudget: number | null;
  rateLimitTpm: number | null;
}

export type GroupBy = 'key' | 'user' | 'model' | 'day';

export interface ReportFilter {
  from: Date;
  to: Date;
  userId?: string;
  apiKeyId?: string;
}

export type SplitBy = 'model' | 'user' | 'key';

export interface ReportRow {
  group: string | null;
  /** splitReport: the series (model, user id or key id); null in an `other` row. */
  series?: string | null;
  /** splitReport: the series past the limit, folded. */
  other?: boolean;
  keyName: string | null;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cacheWriteTokens: number;
  cacheReadTokens: number;
  costMicros: number;
}

const period = (v: string | null): QuotaPeriod => (v === 'daily' || v === 'monthly' ? v : 'none');
const num = (v: string | number | null) => (v === null ? null : Number(v));

/**
 * Reads of the ledger and of the limit owners (tenants, users, api_keys) for
 * reconciliation and the usage API. Every method takes the tenant first and filters by
 * it; only `tenantIds` (reconciliation of all tenants) reads across tenants.
 */
@Injectable()
export class UsageRepository {
  constructor(private readonly db: DataSource) {}

  async tenant(tenantId: string): Promise<PeriodOwner | null> {
    const rows = (await this.db.query(`SELECT id, quota_period FROM tenants WHERE id = $1`, [tenantId])) as {
      id: string;
      quota_period: string;
    }[];
    return rows[0] ? { id: rows[0].id, quotaPeriod: period(rows[0].quota_period) } : null;
  }

  /** The tenant's own limits (all its keys together). */
  async tenantLimits(tenantId: string): Promise<TenantLimitsRow | null> {
    const rows = (await this.db.query(
      `SELECT id, name, quota_limit, max_budget, quota_period, rate_limit_tpm FROM tenants WHERE id = $1`,
      [tenantId],
    )) as {
      id: string;
      name: string;
      quota_limit: string | null;
      max_budget: string | null;
      quota_period: string;
      rate_limit_tpm: number | null;
    }[];
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      name: r.name,
      quotaLimit: num(r.quota_limit),
      maxBudget: num(r.max_budget),
      quotaPeriod: period(r.quota_period),
      rateLimitTpm: r.rate_limit_tpm,
    };
  }

  async tenantIds(): Promise<string[]> {
    const rows = (await this.db.query(`SELECT id FROM tenants ORDER BY created_at`)) as { id: string }[];
    return rows.map((r) => r.id);
  }

  async key(tenantId: string, apiKeyId: string): Promise<KeyLimitsRow | null> {
    const rows = (await this.db.query(
      `SELECT id, user_id, name, quota_limit, max_budget, quota_period FROM api_keys WHERE tenant_id = $1 AND id = $2`,
      [tenantId, apiKeyId],
    )) as {
      id: string;
      user_id: string | null;
      name: string;
      quota_limit: string | null;
      max_budget: string | null;
      quota_period: string;
    }[];
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      userId: r.user_id,
      name: r.name,
      quotaLimit: num(r.quota_limit),
      maxBudget: num(r.max_budget),
      quotaPeriod: period(r.quota_period),
    };
  }

  /**
   * Ledger sums of one level in [from, to) (null = unbounded), per owner id. For the
   * tenant level the map has one entry under the tenant id.
   */
  async sums(
    tenantId: string,
    level: QuotaLevel,
    ids: string[],
    from: number | null,
    to: number | null,
  ): Promise<Map<string, Sums>> {
    const out = new Map<string, Sums>();
    if (!ids.length) return out;
    const column = level === 'tenant' ? 'tenant_id' : level === 'user' ? 'user_id' : 'api_key_id';
    const params: unknown[] = [tenantId, ids];
    let where = `tenant_id = $1 AND ${column} = ANY($2::uuid[])`;
    if (from !== null) {
      params.push(new Date(from).toISOString());
      where += ` AND created_at >= $${params.length}`;
    }
    if (to !== null) {
      params.push(new Date(to).toISOString());
      where += ` AND created_at < $${params.length}`;
    }
    const rows = (await this.db.query(
      `SELECT ${column} AS id,
              coalesce(sum(prompt_tokens::bigint + completion_tokens), 0)::text AS tokens,
              (coalesce(sum(cost), 0) * 1000000)::bigint::text AS micros
         FROM usage_records WHERE ${where} GROUP BY ${column}`,
      params,
    )) as { id: string; tokens: string; micros: string }[];
    for (const r of rows) out.set(r.id, { tokens: Number(r.tokens), costMicros: Number(r.micros) });
    return out;
  }

  /** One owner's sums as PostgreSQL returns them (levelSumOf reads one). */
  static readonly levelSumOf = (r: LevelSumRow) => ({
    id: r.id,
    userId: r.user_id,
    period: (r.period === 'daily' || r.period === 'monthly' ? r.period : 'none') as QuotaPeriod,
    sums: { tokens: Number(r.tokens), costMicros: Number(r.micros) },
  });

  /**
   * Ledger sums of the tenant's users or keys, each over its own reset period's window
   * (`windows`; `none`: all time), keys with their owner, read through a server-side cursor
   * `batch` rows at a time and handed to `each` (awaited before the next batch is fetched):
   * a tenant with 100,000 keys is never held in memory at once (rebuild-scale.e2e-spec.ts).
   * `all` false: only those with rows in their current period (the others' counters are 0),
   * one pass over the tenant's rows; true: every user or key, those without rows with 0.
   */
  async eachLevelSum(
    tenantId: string,
    level: 'user' | 'key',
    windows: Record<'daily' | 'monthly', { from: number; to: number }>,
    opts: { all: boolean; batch: number },
    each: (rows: LevelSumRow[]) => Promise<void>,
  ): Promise<void> {
    const table = level === 'key' ? 'api_keys' : 'users';
    const userCol = level === 'key' ? 'o.user_id' : 'o.id';
    const fk = level === 'key' ? 'r.api_key_id' : 'r.user_id';
    const iso = (t: number) => new Date(t).toISOString();
    const window = `r.created_at >= CASE o.quota_period WHEN 'daily' THEN $2::timestamptz
                                                        WHEN 'monthly' THEN $4::timestamptz
                                                        ELSE '-infinity'::timestamptz END
                AND r.created_at < CASE o.quota_period WHEN 'daily' THEN $3::timestamptz
                                                       WHEN 'monthly' THEN $5::timestamptz
                                                       ELSE 'infinity'::timestamptz END`;
    const from = opts.all
      ? `${table} o LEFT JOIN usage_records r ON ${fk} = o.id AND r.tenant_id = o.tenant_id AND ${window}
          WHERE o.tenant_id = $1`
      : `usage_records r JOIN ${table} o ON o.id = ${fk} AND o.tenant_id = r.tenant_id
          WHERE r.tenant_id = $1 AND ${window}`;
    const runner = this.db.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      // planned for the whole result, not for its first rows (a cursor's default)
      await runner.query(`SET LOCAL cursor_tuple_fraction = 1`);
      await runner.query(
        `DECLARE level_sums NO SCROLL CURSOR FOR
         SELECT o.id AS id, ${userCol} AS user_id, o.quota_period AS period,
                coalesce(sum(r.prompt_tokens::bigint + r.completion_tokens), 0)::text AS tokens,
                (coalesce(sum(r.cost), 0) * 1000000)::bigint::text AS micros
           FROM ${from}
          GROUP BY o.id, ${userCol}, o.quota_period`,
        [
          tenantId,
          iso(windows.daily.from),
          iso(windows.daily.to),
          iso(windows.monthly.from),
          iso(windows.monthly.to),
        ],
      );
      for (;;) {
        const rows = (await runner.query(`FETCH ${Math.floor(opts.batch)} FROM level_sums`)) as LevelSumRow[];
        if (rows.length) await each(rows);
        if (rows.length < opts.batch) break;
      }
      await runner.commitTransaction();
    } catch (e) {
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
      throw e;
    } finally {
      await runner.release();
    }
  }

  /** The WHERE of a report (tenant, range, user, key) and its parameters; `r` is usage_records. */
  private static filter(tenantId: string, f: ReportFilter): { where: string; params: unknown[] } {
    const params: unknown[] = [tenantId, f.from.toISOString(), f.to.toISOString()];
    let where = `r.tenant_id = $1 AND r.created_at >= $2 AND r.created_at < $3`;
    if (f.userId) {
      params.push(f.userId);
      where += ` AND r.user_id = $${params.length}`;
    }
    if (f.apiKeyId) {
      params.push(f.apiKeyId);
      where += ` AND r.api_key_id = $${params.length}`;
    }
    return { where, params };
  }

  private static readonly SUMS = `count(*)::int AS requests,
              coalesce(sum(r.prompt_tokens::bigint), 0) AS prompt,
              coalesce(sum(r.completion_tokens::bigint), 0) AS completion,
              coalesce(sum(r.cache_write_tokens::bigint), 0) AS cache_write,
              coalesce(sum(r.cache_read_tokens::bigint), 0) AS cache_read,
              coalesce(sum(r.cost), 0) AS cost`;

  private static figures(r: RawFigures): Omit<ReportRow, 'group' | 'keyName'> {
    return {
      requests: Number(r.requests),
      promptTokens: Number(r.prompt),
      completionTokens: Number(r.completion),
      cacheWriteTokens: Number(r.cache_write),
      cacheReadTokens: Number(r.cache_read),
      costMicros: Number(r.micros),
    };
  }

  /** Usage grouped by key, user, model or local day (timeZone), newest days first. */
  async report(tenantId: string, groupBy: GroupBy, f: ReportFilter, timeZone: string): Promise<ReportRow[]> {
    const { where, params } = UsageRepository.filter(tenantId, f);
    let group: string;
    let join = '';
    let keyName = 'NULL';
    if (groupBy === 'key') {
      group = 'r.api_key_id::text';
      join = 'LEFT JOIN api_keys k ON k.id = r.api_key_id AND k.tenant_id = r.tenant_id';
      keyName = 'max(k.name)';
    } else if (groupBy === 'user') group = 'r.user_id::text';
    else if (groupBy === 'model') group = 'r.model';
    else {
      params.push(timeZone);
      group = `to_char(r.created_at AT TIME ZONE $${params.length}, 'YYYY-MM-DD')`;
    }
    const rows = (await this.db.query(
      `SELECT g.grp, g.key_name, g.requests, g.prompt::text, g.completion::text, g.cache_write::text,
              g.cache_read::text, (g.cost * 1000000)::bigint::text AS micros
         FROM (SELECT ${group} AS grp, ${keyName} AS key_name, ${UsageRepository.SUMS}
                 FROM usage_records r ${join}
                WHERE ${where}
                GROUP BY grp) g
        ORDER BY ${groupBy === 'day' ? 'g.grp DESC' : 'g.cost DESC, g.requests DESC, g.grp'}
        LIMIT 1000`,
      params,
    )) as (RawFigures & { grp: string | null; key_name: string | null })[];
    return rows.map((r) => ({ group: r.grp, keyName: r.key_name, ...UsageRepository.figures(r) }));
  }

  /**
   * Usage per local day and model, user or key (the usage page's stacked bars): the `limit`
   * series with the most spend (then tokens) in the range keep rows of their own, the rest of
   * each day is folded into one `other` row. At most days x (limit + 1) rows, newest day first.
   */
  async splitReport(
    tenantId: string,
    splitBy: SplitBy,
    f: ReportFilter,
    timeZone: string,
    limit: number,
  ): Promise<ReportRow[]> {
    const { where, params } = UsageRepository.filter(tenantId, f);
    params.push(timeZone);
    const day = `to_char(r.created_at AT TIME ZONE $${params.length}, 'YYYY-MM-DD')`;
    params.push(limit);
    const n = `$${params.length}`;
    const series =
      splitBy === 'key' ? 'r.api_key_id::text' : splitBy === 'user' ? 'r.user_id::text' : 'r.model';
    const keyJoin =
      splitBy === 'key' ? 'LEFT JOIN api_keys k ON k.tenant_id = $1 AND k.id = x.series::uuid' : '';
    const rows = (await this.db.query(
      `WITH g AS (
         SELECT ${day} AS day, ${series} AS series, ${UsageRepository.SUMS}
           FROM usage_records r
          WHERE ${where}
          GROUP BY 1, 2
       ), ranked AS (
         SELECT series, row_number() OVER (ORDER BY sum(cost) DESC, sum(prompt + completion) DESC,
                                                    series NULLS LAST) AS rank
           FROM g GROUP BY series
       ), x AS (
         SELECT g.day, CASE WHEN k.rank <= ${n} THEN g.series END AS series, k.rank > ${n} AS other,
                sum(g.requests)::int AS requests, sum(g.prompt) AS prompt, sum(g.completion) AS completion,
                sum(g.cache_write) AS cache_write, sum(g.cache_read) AS cache_read, sum(g.cost) AS cost,
                min(k.rank) AS rank
           FROM g JOIN ranked k ON k.series IS NOT DISTINCT FROM g.series
          GROUP BY 1, 2, 3
       )
       SELECT x.day, x.series, x.other, ${splitBy === 'key' ? 'k.name' : 'NULL'} AS key_name, x.requests,
              x.prompt::text, x.completion::text, x.cache_write::text, x.cache_read::text,
              (x.cost * 1000000)::bigint::text AS micros
         FROM x ${keyJoin}
        ORDER BY x.day DESC, x.other, x.rank`,
      params,
    )) as (RawFigures & { day: string; series: string | null; other: boolean; key_name: string | null })[];
    return rows.map((r) => ({
      group: r.day,
      series: r.series,
      other: r.other,
      keyName: r.key_name,
      ...UsageRepository.figures(r),
    }));
  }
}

interface RawFigures {
  requests: number;
  prompt: string;
  completion: string;
  cache_write: string;
  cache_read: string;
  micros: string;
}

/** A row of UsageRepository.eachLevelSum, as PostgreSQL returns it (levelSumOf reads one). */
export interface LevelSumRow {
  id: string;
  user_id: string | null;
  period: string | null;
  tokens: string;
  micros: string;
}
