import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ApiError, REFUSAL_REASONS } from '@app/observability';
import { RequestContext } from '@app/tenancy';
import { QuotaClock } from '../clock';
import {
  CurrentPeriodUsage,
  KeyUsageResponse,
  RefusalsResponse,
  TenantLimitsResponse,
  UsageQuery,
  UsageRangeQuery,
  UsageReportResponse,
  UsageRow,
  UsageTotals,
} from '../dto/usage.dto';
import { levelRef } from '../keys';
import { RefusalsRepository } from '../refusals/refusals.repository';
import { localDay, periodWindow } from '../periods';
import type { QuotaPeriod } from '../quota.types';
import { microsToUsd } from '../pricing';
import { QuotaStore } from '../store/quota-store';
import { ReportRow, UsageRepository } from './usage.repository';

const DAY = 86_400_000;
const MAX_RANGE_DAYS = 400;

function totalsOf(rows: ReportRow[]): UsageTotals {
  const t = rows.reduce(
    (a, r) => ({
      requests: a.requests + r.requests,
      prompt: a.prompt + r.promptTokens,
      completion: a.completion + r.completionTokens,
      cacheWrite: a.cacheWrite + r.cacheWriteTokens,
      cacheRead: a.cacheRead + r.cacheReadTokens,
      micros: a.micros + r.costMicros,
    }),
    { requests: 0, prompt: 0, completion: 0, cacheWrite: 0, cacheRead: 0, micros: 0 },
  );
  return {
    requests: t.requests,
    prompt_tokens: t.prompt,
    completion_tokens: t.completion,
    total_tokens: t.prompt + t.completion,
    cache_write_tokens: t.cacheWrite,
    cache_read_tokens: t.cacheRead,
    cost_usd: microsToUsd(t.micros),
  };
}

/** The columns that name a row's group (or, split, its series). */
function seriesColumns(by: string, r: ReportRow): Partial<UsageRow> {
  if (by === 'key') return { api_key_id: r.series ?? undefined, key_name: r.keyName };
  if (by === 'user') return { user_id: r.series ?? null };
  if (by === 'model') return { model: r.series ?? '' };
  return { day: r.series ?? '' };
}

/** Usage reads for the admin API. Admins (and the master key) see the tenant; members only their own. */
@Injectable()
export class UsageService {
  constructor(
    private readonly repo: UsageRepository,
    private readonly ctx: RequestContext,
    private readonly store: QuotaStore,
    private readonly clock: QuotaClock,
    private readonly config: AppConfig,
    private readonly refusalCounts: RefusalsRepository,
  ) {}

  /** The tenant, and the only user whose records the caller may see (members). */
  private scope(): { tenantId: string; onlyUserId?: string } {
    const tenantId = this.ctx.tenantId;
    const p = this.ctx.principal;
    if (p?.kind === 'user' && p.role !== 'admin') return { tenantId, onlyUserId: p.userId ?? '' };
    return { tenantId };
  }

  private range(q: UsageRangeQuery): { from: Date; to: Date } {
    const to = q.to ? new Date(q.to) : new Date(this.clock.now());
    const from = q.from ? new Date(q.from) : new Date(to.getTime() - 30 * DAY);
    if (Number.isNaN(from.getTime()))
      throw ApiError.badRequest('from is not a valid date', 'invalid_request', 'from');
    if (Number.isNaN(to.getTime()))
      throw ApiError.badRequest('to is not a valid date', 'invalid_request', 'to');
    if (from >= to) throw ApiError.badRequest('from must be before to', 'invalid_request', 'from');
    if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY)
      throw ApiError.badRequest(
        `the range may span at most ${MAX_RANGE_DAYS} days`,
        'invalid_request',
        'from',
      );
    return { from, to };
  }

  async report(q: UsageQuery): Promise<UsageReportResponse> {
    const { tenantId, onlyUserId } = this.scope();
    if (onlyUserId && q.user_id && q.user_id !== onlyUserId) {
      throw ApiError.forbidden('Members see only their own usage', 'forbidden');
    }
    return this.reportIn(tenantId, q, onlyUserId);
  }

  /**
   * The usage report of a tenant named by the caller (the CLI's `usage`; the API's `report`
   * names the request's tenant). `onlyUserId`: only that user's records.
   */
  async reportIn(tenantId: string, q: UsageQuery, onlyUserId?: string): Promise<UsageReportResponse> {
    const { from, to } = this.range(q);
    const groupBy = q.group_by ?? 'day';
    if (q.split_by && groupBy !== 'day')
      throw ApiError.badRequest('split_by needs group_by=day', 'invalid_request', 'split_by');
    if (q.split_limit !== undefined && !q.split_by)
      throw ApiError.badRequest('split_limit needs split_by', 'invalid_request', 'split_limit');
    const filter = { from, to, userId: onlyUserId ?? q.user_id, apiKeyId: q.api_key_id };
    const tz = this.config.QUOTA_TIMEZONE;
    const rows = q.split_by
      ? await this.repo.splitReport(tenantId, q.split_by, filter, tz, q.split_limit ?? 10)
      : await this.repo.report(tenantId, groupBy, filter, tz);
    const data: UsageRow[] = rows.map((r) => {
      const row: UsageRow = {
        requests: r.requests,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        total_tokens: r.promptTokens + r.completionTokens,
        cache_write_tokens: r.cacheWriteTokens,
        cache_read_tokens: r.cacheReadTokens,
        cost_usd: microsToUsd(r.costMicros),
      };
      if (q.split_by) {
        if (r.other) return { day: r.group ?? '', other: true, ...row };
        return { day: r.group ?? '', ...seriesColumns(q.split_by, r), ...row };
      }
      return { ...seriesColumns(groupBy, { ...r, series: r.group }), ...row };
    });
    return {
      object: 'list',
      group_by: groupBy,
      ...(q.split_by ? { split_by: q.split_by } : {}),
      from: from.toISOString(),
      to: to.toISOString(),
      data,
      totals: totalsOf(rows),
    };
  }

  /**
   * The tenant's refused requests per local day and reason, for the days the range touches
   * (counted where the gateway refuses: limits, model, expired or revoked keys; not upstream
   * errors). Admins and the master key only (the route's roles).
   */
  async refusals(q: UsageRangeQuery): Promise<RefusalsResponse> {
    const { tenantId } = this.scope();
    const { from, to } = this.range(q);
    const tz = this.config.QUOTA_TIMEZONE;
    const fromDay = localDay(from.getTime(), tz);
    const toDay = localDay(to.getTime() - 1, tz);
    const rows = await this.refusalCounts.report(tenantId, fromDay, toDay);
    const totals = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<string, number>;
    for (const r of rows) totals[r.reason] = (totals[r.reason] ?? 0) + r.count;
    return {
      object: 'list',
      from: from.toISOString(),
      to: to.toISOString(),
      from_day: fromDay,
      to_day: toDay,
      data: rows.map((r) => ({ day: r.day, reason: r.reason, count: r.count })),
      totals,
    };
  }

  /**
   * The tenant's limits and its current reset period against them: the live counters (as
   * admission sees them, reservations included) and the ledger's settled figures. Admins
   * and the master key only (the route's roles).
   */
  async tenantLimits(): Promise<TenantLimitsResponse> {
    const { tenantId } = this.scope();
    const t = await this.repo.tenantLimits(tenantId);
    if (!t) throw ApiError.notFound(`No tenant ${tenantId}`, 'tenant_not_found');
    const now = this.clock.now();
    const w = periodWindow(t.quotaPeriod, now, this.config.QUOTA_TIMEZONE);
    const [current, sums] = await Promise.all([
      this.currentPeriod('tenant', { tenantId, userId: null, apiKeyId: '' }, t, now),
      this.repo.report(
        tenantId,
        'model',
        { from: new Date(w.start ?? 0), to: new Date(w.end ?? now + DAY) },
        this.config.QUOTA_TIMEZONE,
      ),
    ]);
    const ledger = totalsOf(sums);
    return {
      object: 'tenant.limits',
      tenant_id: t.id,
      name: t.name,
      current_period: current,
      rate_limit_tpm: t.rateLimitTpm,
      ledger: { requests: ledger.requests, total_tokens: ledger.total_tokens, cost_usd: ledger.cost_usd },
    };
  }

  async keyUsage(apiKeyId: string, q: UsageRangeQuery): Promise<KeyUsageResponse> {
    const { tenantId, onlyUserId } = this.scope();
    const key = await this.repo.key(tenantId, apiKeyId);
    // Another tenant's key, or (for a member) another user's: the same 404 as a missing one.
    if (!key || (onlyUserId !== undefined && key.userId !== onlyUserId)) {
      throw ApiError.notFound(`No API key ${apiKeyId}`, 'api_key_not_found');
    }
    const { from, to } = this.range(q);
    const rows = await this.repo.report(tenantId, 'key', { from, to, apiKeyId }, this.config.QUOTA_TIMEZONE);
    const current = await this.currentPeriod(
      'key',
      { tenantId, userId: key.userId, apiKeyId },
      key,
      this.clock.now(),
    );
    return {
      object: 'api_key.usage',
      api_key_id: key.id,
      name: key.name,
      user_id: key.userId,
      from: from.toISOString(),
      to: to.toISOString(),
      ...totalsOf(rows),
      current_period: current,
    };
  }

  /** A tenant's or key's current reset period: its window, live counters (null: store unreachable) and limits. */
  private async currentPeriod(
    level: 'tenant' | 'key',
    ids: { tenantId: string; userId: string | null; apiKeyId: string },
    owner: { quotaPeriod: QuotaPeriod; quotaLimit: number | null; maxBudget: number | null },
    now: number,
  ): Promise<CurrentPeriodUsage> {
    const tz = this.config.QUOTA_TIMEZONE;
    const w = periodWindow(owner.quotaPeriod, now, tz);
    const ref = levelRef(level, ids, { period: owner.quotaPeriod }, now, tz);
    const [tokens, spend] = await this.store
      .read(ids.tenantId, [ref.tokensKey, ref.spendKey], now)
      .catch((): (number | null)[] => [null, null]);
    return {
      period: owner.quotaPeriod,
      period_start: w.start === null ? null : new Date(w.start).toISOString(),
      period_end: w.end === null ? null : new Date(w.end).toISOString(),
      tokens,
      quota_limit: owner.quotaLimit,
      spend_usd: spend === null ? null : microsToUsd(spend),
      max_budget: owner.maxBudget,
    };
  }
}
