import { Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { AppConfig } from '@app/config';
import { QuotaClock } from './clock';
import { Dimension, rateLimitHeaders } from './headers';
import { LevelRef, rpmKey, subjectLevels } from './keys';
import type { LedgerRecord } from './ledger/ledger-record';
import { LedgerService } from './ledger/ledger.service';
import { periodWindow } from './periods';
import { microsToUsd, ModelPricing, costMicros, usdToMicros } from './pricing';
import { QuotaMetrics } from './quota-metrics';
import type { QuotaLimits, QuotaSubject } from './quota.types';
import { ReconciliationService } from './reconciliation.service';
import { ledgerFull, modelNotAllowed, quotaExceeded, rateLimited, storeUnavailable } from './refusals';
import {
  LevelUsage,
  QuotaStore,
  ReservationRef,
  ReserveLevel,
  ReserveResult,
  RpmState,
} from './store/quota-store';

export const RPM_WINDOW_MS = 60_000;
/** What a client is told to wait for a quota without reset period (it never resets). */
const NO_RESET_MS = 86_400_000;

export interface AdmitRequest {
  model: string;
  /** Prompt estimate + max_tokens (or QUOTA_DEFAULT_MAX_TOKENS): see `estimate()`. */
  estimatedTokens: number;
  estimatedCostMicros: number;
}

/** Held by the completion path between admit and settle/release. */
export interface Reservation {
  readonly id: string;
  readonly tenantId: string;
  readonly userId: string | null;
  readonly apiKeyId: string;
  readonly model: string;
  readonly estimatedTokens: number;
  readonly estimatedCostMicros: number;
  /** Epoch ms (quota clock): the ledger row's created_at and the counters' period. */
  readonly admittedAt: number;
  readonly levels: LevelRef[];
  /** Admitted without counting (Redis down, QUOTA_FAIL_MODE=open). */
  readonly unchecked: boolean;
  state: 'reserved' | 'settled' | 'released';
}

export interface Admission {
  reservation: Reservation;
  /** The six x-ratelimit-* headers for the response. */
  headers: Record<string, string>;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** `costMicros(pricing, promptTokens, completionTokens)`. */
  costMicros: number;
  /** Of the prompt tokens: written to / read from the provider's prompt cache (recorded on the row). */
  cacheWriteTokens?: number;
  cacheReadTokens?: number;
}

export interface RequestMeta {
  requestId?: string | null;
  provider: string;
  /** The model that answered, when it differs from the requested one. */
  model?: string;
  /** e.g. `success`, `error`, `aborted`, `upstream_error`. */
  status: string;
  latencyMs?: number | null;
}

const MAX_AMOUNT = 1e13;

function amount(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_AMOUNT)
    throw new RangeError(`${name} must be an integer between 0 and ${MAX_AMOUNT}`);
  return n;
}

const limitsOf = (s: QuotaSubject, level: LevelRef['level']): QuotaLimits =>
  (level === 'user' ? s.limits.user : s.limits[level]) ?? {
    tokenLimit: null,
    budgetUsd: null,
    period: 'none',
  };

/**
 * What the completion path calls (see README "Quotas"):
 *
 *   quota.checkModel(principal, model)                      403 before any upstream work
 *   const { reservation, headers } = await quota.admit(principal, { model, ...quota.estimate(...) })
 *   ... call the provider, set `headers` on the response ...
 *   await quota.settle(reservation, usage, meta)            or quota.release(reservation, meta)
 *
 * Overspend bound (README "Quotas"): admit refuses unless every counter (settled usage
 * plus open reservations) + the estimate stays within its limit, atomically. Settle
 * replaces the estimate by the actual amount, so for every limit
 *   final usage <= limit + sum over requests in flight when the last one was admitted of
 *                 max(0, actual - reserved).
 * With actual <= reserved (prompt counted exactly, completion capped by max_tokens) the
 * bound is 0: a limit is never exceeded. An expired reservation (crashed request) frees
 * its amounts; a settle arriving after that adds the actual amounts in full. A store that
 * lost a tenant's counters (Redis restarted empty, flushed) admits nothing for it until
 * they are rebuilt from the ledger (the tenant's marker, see QuotaStore.requireInitialized).
 */
@Injectable()
export class QuotaService {
  private readonly logger = new Logger('Quota');
  private failures = 0;
  private lastFailureLog = 0;
  private suppressed = 0;
  private readonly initializing = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: QuotaStore,
    private readonly ledger: LedgerService,
    private readonly reconciliation: ReconciliationService,
    private readonly clock: QuotaClock,
    private readonly config: AppConfig,
    private readonly metrics: QuotaMetrics,
  ) {}

  /** Quota store operations that failed (Redis down), since start. */
  get storeFailures(): number {
    return this.failures;
  }

  /**
   * The amounts to reserve for a request: the prompt estimate plus max_tokens (or
   * QUOTA_DEFAULT_MAX_TOKENS when the request sets none), priced with the model's pricing.
   */
  estimate(
    pricing: ModelPricing | null,
    promptTokens: number,
    maxTokens?: number | null,
  ): { estimatedTokens: number; estimatedCostMicros: number } {
    const completion = maxTokens ?? this.config.QUOTA_DEFAULT_MAX_TOKENS;
    return {
      estimatedTokens: promptTokens + completion,
      estimatedCostMicros: pricing ? costMicros(pricing, promptTokens, completion) : 0,
    };
  }

  /** 403 model_not_allowed unless the key may use `model` (allowedModels null = all). */
  checkModel(subject: Pick<QuotaSubject, 'allowedModels' | 'tenantId' | 'apiKeyId'>, model: string): void {
    if (subject.allowedModels === null || subject.allowedModels.includes(model)) return;
    this.metrics.refusal('key', 'model');
    throw modelNotAllowed(model);
  }

  /**
   * Checks the key's rate limit and reserves the estimate at every level, atomically.
   * Throws ApiError 403 (model), 429 (quota, budget, rate) with Retry-After and the
   * x-ratelimit-* headers, or 503 (store down with QUOTA_FAIL_MODE=closed, ledger full).
   */
  async admit(subject: QuotaSubject, req: AdmitRequest): Promise<Admission> {
    this.checkModel(subject, req.model);
    const tokens = amount('estimatedTokens', req.estimatedTokens);
    const cost = amount('estimatedCostMicros', req.estimatedCostMicros);
    if (this.ledger.isFull) throw ledgerFull();
    const now = this.clock.now();
    const refs = subjectLevels(subject, now, this.config.QUOTA_TIMEZONE);
    const levels: ReserveLevel[] = refs.map((r) => {
      const l = limitsOf(subject, r.level);
      return {
        ...r,
        tokenLimit: l.tokenLimit,
        spendLimitMicros: l.budgetUsd === null ? null : usdToMicros(l.budgetUsd),
      };
    });
    const id = randomUUID();
    const rpm = subject.rateLimitRpm
      ? {
          key: rpmKey(subject.tenantId, subject.apiKeyId),
          limit: subject.rateLimitRpm,
          windowMs: RPM_WINDOW_MS,
        }
      : undefined;
    const reservation = (unchecked: boolean): Reservation => ({
      id,
      tenantId: subject.tenantId,
      userId: subject.userId,
      apiKeyId: subject.apiKeyId,
      model: req.model,
      estimatedTokens: tokens,
      estimatedCostMicros: cost,
      admittedAt: now,
      levels: refs,
      unchecked,
      state: 'reserved',
    });

    let result: ReserveResult;
    try {
      const request = {
        tenantId: subject.tenantId,
        reservationId: id,
        now,
        ttlMs: this.config.QUOTA_RESERVATION_TTL_SECONDS * 1000,
        tokens,
        costMicros: cost,
        levels,
        rpm,
        requireInitialized: true,
      };
      result = await this.store.reserve(request);
      if (!result.ok && result.reason === 'uninitialized') {
        // The store has no counters for this tenant (Redis restarted empty or was flushed,
        // or a new tenant): rebuild them from the ledger before counting against them.
        await this.initialize(subject.tenantId);
        result = await this.store.reserve(request);
        if (!result.ok && result.reason === 'uninitialized')
          throw new Error(`the counters of tenant ${subject.tenantId} could not be rebuilt`);
      }
    } catch (e) {
      this.storeFailed('reserve', e);
      if (this.config.QUOTA_FAIL_MODE === 'closed') throw storeUnavailable();
      return { reservation: reservation(true), headers: {} };
    }

    if (!result.ok && result.reason === 'rpm') {
      this.metrics.refusal('key', 'rate');
      const headers = this.headers(levels, null, result.rpm, subject.rateLimitRpm, now);
      throw rateLimited(result.rpm.limit, result.rpm.resetMs, headers);
    }
    const headers = this.headers(levels, result.usage, result.rpm, subject.rateLimitRpm, now);
    if (!result.ok) {
      const level = levels[result.levelIndex];
      const kind = result.reason;
      const used =
        kind === 'tokens'
          ? result.usage[result.levelIndex].tokens
          : result.usage[result.levelIndex].spendMicros;
      this.metrics.refusal(level.level, kind);
      throw quotaExceeded(
        {
          kind,
          level: level.level,
          period: limitsOf(subject, level.level).period,
          limit: result.limit,
          used,
          requested: kind === 'tokens' ? tokens : cost,
          resetMs: this.resetMs(limitsOf(subject, level.level).period, now),
        },
        headers,
      );
    }
    return { reservation: reservation(false), headers };
  }

  /**
   * Charges the actual usage (replacing the reservation) and queues the ledger row.
   * Idempotent per reservation: a second settle or a release after it is ignored.
   */
  async settle(reservation: Reservation, usage: Usage, meta: RequestMeta): Promise<LedgerRecord | null> {
    if (reservation.state !== 'reserved') {
      this.logger.warn(`reservation ${reservation.id} already ${reservation.state}: settle ignored`);
      return null;
    }
    const prompt = amount('promptTokens', usage.promptTokens);
    const completion = amount('completionTokens', usage.completionTokens);
    const cost = amount('costMicros', usage.costMicros);
    reservation.state = 'settled';
    try {
      const r = await this.store.settle(this.ref(reservation), prompt + completion, cost, this.clock.now());
      if (r.late) {
        this.logger.warn(
          `reservation ${reservation.id} ${reservation.unchecked ? 'was never counted (store was down)' : 'expired before its settle'}: actual usage added in full`,
        );
      }
    } catch (e) {
      this.storeFailed('settle', e);
      this.reconciliation.markDirty(reservation.tenantId);
    }
    this.metrics.tokens(meta.model ?? reservation.model, prompt, completion, microsToUsd(cost));
    // Cached prompt tokens are part of the prompt: a figure above it is the caller's bug, not a charge.
    const cached = (v: number | undefined) =>
      typeof v === 'number' && Number.isInteger(v) && v > 0 ? Math.min(v, prompt) : 0;
    const cacheWriteTokens = cached(usage.cacheWriteTokens);
    const cacheReadTokens = Math.min(cached(usage.cacheReadTokens), prompt - cacheWriteTokens);
    return this.record(reservation, prompt, completion, cost, meta, { cacheWriteTokens, cacheReadTokens });
  }

  /** Gives the reservation back (the provider charged nothing) and queues a zero-usage ledger row. */
  async release(reservation: Reservation, meta: RequestMeta): Promise<void> {
    if (reservation.state !== 'reserved') return;
    reservation.state = 'released';
    if (!reservation.unchecked) {
      try {
        await this.store.release(this.ref(reservation), this.clock.now());
      } catch (e) {
        this.storeFailed('release', e);
        this.reconciliation.markDirty(reservation.tenantId);
      }
    }
    this.record(reservation, 0, 0, 0, meta);
  }

  private record(
    r: Reservation,
    prompt: number,
    completion: number,
    cost: number,
    meta: RequestMeta,
    cached: Pick<LedgerRecord, 'cacheWriteTokens' | 'cacheReadTokens'> = {},
  ): LedgerRecord {
    const row: LedgerRecord = {
      ...cached,
      id: randomUUID(),
      requestId: meta.requestId ?? null,
      tenantId: r.tenantId,
      userId: r.userId,
      apiKeyId: r.apiKeyId,
      model: (meta.model ?? r.model).slice(0, 200),
      provider: meta.provider.slice(0, 64),
      promptTokens: prompt,
      completionTokens: completion,
      costMicros: cost,
      status: meta.status.slice(0, 32),
      latencyMs: meta.latencyMs ?? null,
      createdAt: new Date(r.admittedAt),
    };
    this.ledger.enqueue(row);
    return row;
  }

  /**
   * One rebuild of a tenant's counters at a time per instance; concurrent admits wait for it.
   * When the whole store was lost (no global marker: Redis restarted empty or flushed), the
   * rebuild first waits LEDGER_FLUSH_MS + 1 s: admissions of the tenant are held meanwhile
   * (on every instance: none has the tenant's marker), so its requests in flight finish and
   * every instance writes their rows; the ledger then holds everything settled, and the
   * rebuild is exact (found by the reliability suite: FLUSHALL under load left the tenant's
   * counter 21 requests below the ledger, the rows still queued when it was rebuilt).
   */
  private initialize(tenantId: string): Promise<unknown> {
    let p = this.initializing.get(tenantId);
    if (!p) {
      p = (async () => {
        const storeLost = !(await this.store.isInitialized().catch(() => false));
        if (storeLost) await new Promise((r) => setTimeout(r, this.config.LEDGER_FLUSH_MS + 1000));
        return this.reconciliation.rebuild(tenantId, { onlyIfUninitialized: true });
      })().finally(() => this.initializing.delete(tenantId));
      this.initializing.set(tenantId, p);
    }
    return p;
  }

  private ref(r: Reservation): ReservationRef {
    return { tenantId: r.tenantId, reservationId: r.id, levels: r.levels };
  }

  private resetMs(period: QuotaLimits['period'], now: number): number | null {
    const w = periodWindow(period, now, this.config.QUOTA_TIMEZONE);
    return w.end === null ? null : w.end - now;
  }

  /** requests: the key's rpm window; tokens: the level with the fewest tokens left. */
  private headers(
    levels: ReserveLevel[],
    usage: LevelUsage[] | null,
    rpm: RpmState | null,
    rpmLimit: number | null,
    now: number,
  ): Record<string, string> {
    const requests: Dimension = rpm
      ? { limit: rpm.limit, remaining: rpm.limit - rpm.count, resetMs: rpm.resetMs }
      : { limit: rpmLimit, remaining: rpmLimit ?? 0, resetMs: 0 };
    let tokens: Dimension = { limit: null, remaining: 0, resetMs: 0 };
    if (usage) {
      levels.forEach((l, i) => {
        if (l.tokenLimit === null) return;
        const remaining = l.tokenLimit - usage[i].tokens;
        if (tokens.limit === null || remaining < tokens.remaining) {
          const w = periodWindow(l.period, now, this.config.QUOTA_TIMEZONE);
          tokens = { limit: l.tokenLimit, remaining, resetMs: w.end === null ? NO_RESET_MS : w.end - now };
        }
      });
    }
    return rateLimitHeaders(requests, tokens);
  }

  private storeFailed(op: string, e: unknown): void {
    this.failures++;
    this.metrics.storeFailure(op, this.config.QUOTA_FAIL_MODE);
    const now = Date.now();
    if (now - this.lastFailureLog < 5000) {
      this.suppressed++;
      return;
    }
    const more = this.suppressed ? ` (+${this.suppressed} more since the last message)` : '';
    this.suppressed = 0;
    this.lastFailureLog = now;
    const action =
      op !== 'reserve'
        ? 'counters will be rebuilt from the ledger'
        : this.config.QUOTA_FAIL_MODE === 'closed'
          ? 'request refused with 503 (QUOTA_FAIL_MODE=closed)'
          : 'request served without counting (QUOTA_FAIL_MODE=open); counters rebuilt from the ledger later';
    this.logger.error(
      `quota store unavailable on ${op} (${(e as Error)?.message ?? String(e)}): ${action}${more}`,
    );
  }
}
