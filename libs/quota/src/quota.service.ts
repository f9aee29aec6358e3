import { Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { AppConfig } from '@app/config';
import { QuotaClock } from './clock';
import { Dimension, rateLimitHeaders } from './headers';
import { LevelRef, rpmKey, subjectLevels, tpmKey } from './keys';
import { LedgerRecord, serializeRecord } from './ledger/ledger-record';
import { LedgerStreamService } from './ledger/ledger-stream.service';
import { LedgerService } from './ledger/ledger.service';
import { periodWindow } from './periods';
import { costMicros, microsToUsd, ModelPricing, usdToMicros } from './pricing';
import { QuotaMetrics } from './quota-metrics';
import type { QuotaLimits, QuotaSubject } from './quota.types';
import { ReconciliationService } from './reconciliation.service';
import {
  ledgerFull,
  modelNotAllowed,
  quotaExceeded,
  rateLimited,
  storeUnavailable,
  tpmLimited,
} from './refusals';
import {
  LevelUsage,
  QuotaStore,
  ReservationRef,
  completionMicros,
  ReserveLevel,
  ReserveRequest,
  ReserveResult,
  RpmState,
  SettleOptions,
  TpmState,
  TpmWindow,
} from './store/quota-store';

export const RPM_WINDOW_MS = 60_000;
export const TPM_WINDOW_MS = 60_000;
/** What a client is told to wait for a quota without reset period (it never resets). */
const NO_RESET_MS = 86_400_000;

export interface AdmitRequest {
  /** The model name as the client sent it (what allowedModels lists). */
  model: string;
  /** The prompt estimate (never below the real count): reserved whole, or refused. */
  promptTokens: number;
  /**
   * Completion tokens the client asked for per choice (`max_completion_tokens`, else
   * `max_tokens`); null when it sent no cap: the deployment's max output is wanted then.
   */
  wanted: number | null;
  /**
   * The deployment's max output (routing `max_output_tokens`, the least among the route's
   * deployments); null when not configured: QUOTA_DEFAULT_MAX_TOKENS when the client sent
   * no cap, and no bound on a client's cap. A configured value also bounds a larger `wanted`.
   */
  maxOutputTokens?: number | null;
  /** OpenAI `n`: each choice may produce the grant, so n x grant is reserved. Default 1. */
  choices?: number;
  /** The prices the reservation assumes (the route's highest); null = free. */
  pricing?: ModelPricing | null;
}

/** Held by the completion path between admit and settle/release. */
export interface Reservation {
  readonly id: string;
  readonly tenantId: string;
  readonly userId: string | null;
  readonly apiKeyId: string;
  readonly model: string;
  /** What the reservation holds: prompt + choices x grant, and its cost. */
  readonly estimatedTokens: number;
  readonly estimatedCostMicros: number;
  /** Completion tokens granted per choice: the cap sent upstream. */
  readonly grantedCompletionTokens: number;
  /** Epoch ms (quota clock): the ledger row's created_at and the counters' period. */
  readonly admittedAt: number;
  readonly levels: LevelRef[];
  /** Its tokens-per-minute windows (keys), corrected at settle. */
  readonly tpm: string[];
  /** Admitted without counting (Redis down, QUOTA_FAIL_MODE=open). */
  readonly unchecked: boolean;
  state: 'reserved' | 'settled' | 'released';
}

export interface Admission {
  reservation: Reservation;
  /**
   * The six x-ratelimit-* headers for the response, plus `x-gateway-max-tokens` (the grant)
   * when the grant is below the client's cap (or, without one, below the deployment's max).
   */
  headers: Record<string, string>;
  /** The allowance: completion tokens per choice the upstream must be capped at. */
  grantedCompletionTokens: number;
  /** What was wanted per choice (the client's cap, or the deployment's max, bounded by it). */
  wantedCompletionTokens: number;
}

/** The response header naming the cap the gateway sent upstream when it lowered the client's. */
export const GRANT_HEADER = 'x-gateway-max-tokens';

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
  /** The deployment that answered (or failed last), `<model>#<index>`. */
  deployment?: string | null;
  /** Upstream attempts of the request (retries and fallovers included). */
  attempts?: number;
}

const MAX_AMOUNT = 1e13;
/** OpenAI's largest `n`. */
const MAX_CHOICES = 128;

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
 * What every metered surface calls (chat, messages, embeddings, responses: one path; see
 * README "Quotas"):
 *
 *   const { reservation, headers, grantedCompletionTokens } = await quota.admit(principal, {
 *     model,                      // as the client named it (allowed models are checked here: 403)
 *     promptTokens,               // an estimate never below the real count
 *     wanted,                     // the client's cap per choice, or null (= the deployment's max)
 *     maxOutputTokens,            // the deployment's configured max output, or null
 *     choices,                    // OpenAI `n` (default 1)
 *     pricing,                    // the prices to reserve at (the route's highest), or null
 *   })
 *   ... set `headers` on the response; call the provider with its cap (max_tokens /
 *       max_completion_tokens) = grantedCompletionTokens, ALWAYS, per choice; cut a stream
 *       that goes past it ...
 *   await quota.settle(reservation, usage, meta)            or quota.release(reservation, meta)
 *
 * Embeddings (no completion): `wanted: 0`. The grant is 0 then and only the prompt counts.
 *
 * The allowance rule: in the same atomic step that checks and reserves, the store grants
 * min(wanted, what the tightest level still has, in tokens and in USD, after the prompt)
 * completion tokens per choice, and reserves prompt + choices x grant. It refuses (429,
 * naming the level) only when the prompt alone does not fit or the grant is below
 * min(wanted, QUOTA_MIN_COMPLETION_TOKENS).
 *
 * Overspend bound (README "Quotas"): the counters hold settled usage plus open
 * reservations, and nothing is admitted past a limit. Settle replaces the reservation by
 * the actual amount, so for every limit
 *   final usage <= limit + sum over requests in flight when the last one was admitted of
 *                 max(0, actual - reserved).
 * With actual <= reserved (prompt estimate never below the real count, completion capped at
 * the grant, a runaway stream cut there) the bound is 0: a limit is never exceeded. An expired reservation (crashed request) frees
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
    private readonly stream: LedgerStreamService,
  ) {}

  /** Quota store operations that failed (Redis down), since start. */
  get storeFailures(): number {
    return this.failures;
  }

  /** Completion tokens wanted per choice: the client's cap or the deployment's max, bounded by it. */
  wantedCompletionTokens(wanted: number | null, maxOutputTokens: number | null = null): number {
    if (wanted === null) return maxOutputTokens ?? this.config.QUOTA_DEFAULT_MAX_TOKENS;
    return maxOutputTokens === null ? wanted : Math.min(wanted, maxOutputTokens);
  }

  /**
   * What a grant reserves: prompt + choices x completion tokens, priced as the stores price
   * it (the prompt at the input price, the completion rounded up on its own).
   */
  estimate(
    pricing: ModelPricing | null,
    promptTokens: number,
    completionTokens: number,
    choices = 1,
  ): { estimatedTokens: number; estimatedCostMicros: number } {
    return {
      estimatedTokens: promptTokens + choices * completionTokens,
      estimatedCostMicros: pricing
        ? costMicros(pricing, promptTokens, 0) +
          completionMicros(choices * completionTokens, pricing.outputPerMillion)
        : 0,
    };
  }

  /** 403 model_not_allowed unless the key may use `model` (allowedModels null = all). */
  checkModel(subject: Pick<QuotaSubject, 'allowedModels' | 'tenantId' | 'apiKeyId'>, model: string): void {
    if (subject.allowedModels === null || subject.allowedModels.includes(model)) return;
    this.metrics.refusal(subject.tenantId, 'key', 'model', 'model_not_allowed');
    throw modelNotAllowed(model);
  }

  /**
   * Checks the key's rate limit and reserves the estimate at every level, atomically.
   * Throws ApiError 403 (model), 429 (quota, budget, rate) with Retry-After and the
   * x-ratelimit-* headers, or 503 (store down with QUOTA_FAIL_MODE=closed, ledger full).
   */
  async admit(subject: QuotaSubject, req: AdmitRequest): Promise<Admission> {
    this.checkModel(subject, req.model);
    const prompt = amount('promptTokens', req.promptTokens);
    const choices = req.choices ?? 1;
    if (!Number.isSafeInteger(choices) || choices < 1 || choices > MAX_CHOICES)
      throw new RangeError(`choices must be an integer between 1 and ${MAX_CHOICES}`);
    const wanted = amount(
      'wanted',
      this.wantedCompletionTokens(
        req.wanted === null ? null : amount('wanted', req.wanted),
        req.maxOutputTokens ?? null,
      ),
    );
    const pricing = req.pricing ?? null;
    const promptCost = pricing ? costMicros(pricing, prompt, 0) : 0;
    amount('the cost of the request', this.estimate(pricing, prompt, wanted, choices).estimatedCostMicros);
    if (this.ledger.isFull) throw ledgerFull();
    const now = this.clock.now();
    const refs = subjectLevels(subject, now, this.config.QUOTA_TIMEZONE);
    // every field written out: an object spread here was 1.3% of the gateway's CPU at saturation
    const levels: ReserveLevel[] = refs.map((r) => {
      const l = limitsOf(subject, r.level);
      return {
        level: r.level,
        id: r.id,
        tokensKey: r.tokensKey,
        spendKey: r.spendKey,
        period: r.period,
        expireAt: r.expireAt,
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
    const tpm: TpmWindow[] = [];
    for (const r of refs) {
      const limit = limitsOf(subject, r.level).rateLimitTpm;
      if (limit)
        tpm.push({
          level: r.level,
          key: tpmKey(r.level, subject.tenantId, r.id),
          limit,
          windowMs: TPM_WINDOW_MS,
        });
    }
    const reservation = (unchecked: boolean, granted: number, tokens: number, cost: number): Reservation => ({
      id,
      tenantId: subject.tenantId,
      userId: subject.userId,
      apiKeyId: subject.apiKeyId,
      model: req.model,
      estimatedTokens: tokens,
      estimatedCostMicros: cost,
      grantedCompletionTokens: granted,
      admittedAt: now,
      levels: refs,
      tpm: tpm.map((w) => w.key),
      unchecked,
      state: 'reserved',
    });

    let result: ReserveResult;
    try {
      const request: ReserveRequest = {
        tenantId: subject.tenantId,
        reservationId: id,
        now,
        ttlMs: this.config.QUOTA_RESERVATION_TTL_SECONDS * 1000,
        tokens: prompt,
        costMicros: promptCost,
        completion: {
          wanted,
          choices,
          microsPerToken: pricing?.outputPerMillion ?? 0,
          min: this.config.QUOTA_MIN_COMPLETION_TOKENS,
        },
        levels,
        rpm,
        tpm,
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
      if (this.config.QUOTA_FAIL_MODE === 'closed') throw storeUnavailable(e);
      const full = this.estimate(pricing, prompt, wanted, choices);
      return {
        reservation: reservation(true, wanted, full.estimatedTokens, full.estimatedCostMicros),
        headers: {},
        grantedCompletionTokens: wanted,
        wantedCompletionTokens: wanted,
      };
    }

    if (!result.ok && result.reason === 'rpm') {
      this.metrics.refusal(subject.tenantId, 'key', 'rate', 'rpm');
      const headers = this.headers(levels, null, result.rpm, subject.rateLimitRpm, now);
      throw rateLimited(result.rpm.limit, result.rpm.resetMs, headers);
    }
    if (!result.ok && result.reason === 'tpm') {
      const w = tpm[result.windowIndex];
      const state = result.tpm[result.windowIndex];
      this.metrics.refusal(subject.tenantId, w.level, 'rate', 'tpm');
      const least = this.estimate(
        pricing,
        prompt,
        Math.min(wanted, this.config.QUOTA_MIN_COMPLETION_TOKENS),
        choices,
      );
      const headers = this.headers(levels, result.usage, result.rpm, subject.rateLimitRpm, now, result.tpm);
      throw tpmLimited(
        {
          level: w.level,
          limit: w.limit,
          used: state.used,
          requested: least.estimatedTokens,
          retryMs: result.retryMs,
        },
        headers,
      );
    }
    const headers = this.headers(
      levels,
      result.usage,
      result.rpm,
      subject.rateLimitRpm,
      now,
      result.ok ? result.tpm : [],
    );
    if (!result.ok) {
      const level = levels[result.levelIndex];
      const kind = result.reason;
      const used =
        kind === 'tokens'
          ? result.usage[result.levelIndex].tokens
          : result.usage[result.levelIndex].spendMicros;
      // the least this request needs: its prompt and min(wanted, QUOTA_MIN_COMPLETION_TOKENS) per choice
      const least = this.estimate(
        pricing,
        prompt,
        Math.min(wanted, this.config.QUOTA_MIN_COMPLETION_TOKENS),
        choices,
      );
      this.metrics.refusal(subject.tenantId, level.level, kind, kind === 'tokens' ? 'token_quota' : 'budget');
      throw quotaExceeded(
        {
          kind,
          level: level.level,
          period: limitsOf(subject, level.level).period,
          limit: result.limit,
          used,
          requested: kind === 'tokens' ? least.estimatedTokens : least.estimatedCostMicros,
          resetMs: this.resetMs(limitsOf(subject, level.level).period, now),
        },
        headers,
      );
    }
    // lowered: below the client's own cap (by a limit or the deployment's max), or below the
    // deployment's max when the client sent none
    if (result.granted < (req.wanted ?? wanted)) headers[GRANT_HEADER] = String(result.granted);
    return {
      reservation: reservation(false, result.granted, result.tokens, result.costMicros),
      headers,
      grantedCompletionTokens: result.granted,
      wantedCompletionTokens: wanted,
    };
  }

  /**
   * Charges the actual usage (replacing the reservation) and records the ledger row, durably
   * before it returns (the completion path answers after it): with Redis the settle script
   * appends the row to the tenant's ledger stream in the same atomic step; the row also goes
   * to the local journal (DATA_DIR) and the write queue (see `keep`).
   * Idempotent per reservation, here (state) and in the store (settled marker).
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
    // Cached prompt tokens are part of the prompt: a figure above it is the caller's bug, not a charge.
    const cached = (v: number | undefined) =>
      typeof v === 'number' && Number.isInteger(v) && v > 0 ? Math.min(v, prompt) : 0;
    const cacheWriteTokens = cached(usage.cacheWriteTokens);
    const cacheReadTokens = Math.min(cached(usage.cacheReadTokens), prompt - cacheWriteTokens);
    const row = this.row(reservation, prompt, completion, cost, meta, cacheWriteTokens, cacheReadTokens);
    const line = serializeRecord(row);
    try {
      const announced = this.announce(reservation.tenantId);
      if (announced) await announced;
      const r = await this.store.settle(
        this.ref(reservation),
        prompt + completion,
        cost,
        this.clock.now(),
        this.settleOptions(line),
      );
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
    const written = this.keep(row, line);
    if (written) await written;
    return row;
  }

  /** Gives the reservation back (the provider charged nothing) and records a zero-usage ledger row. */
  async release(reservation: Reservation, meta: RequestMeta): Promise<void> {
    if (reservation.state !== 'reserved') return;
    reservation.state = 'released';
    const row = this.row(reservation, 0, 0, 0, meta);
    const line = serializeRecord(row);
    if (!reservation.unchecked) {
      try {
        const announced = this.announce(reservation.tenantId);
        if (announced) await announced;
        await this.store.release(this.ref(reservation), this.clock.now(), this.settleOptions(line));
      } catch (e) {
        this.storeFailed('release', e);
        this.reconciliation.markDirty(reservation.tenantId);
      }
    }
    const written = this.keep(row, line);
    if (written) await written;
  }

  /**
   * The row's local copy (journal + write queue), also when the Redis stream carried it: a
   * Redis that is lost (restarted empty, flushed) takes its undrained stream with it, and a
   * SIGKILL takes the queue; either copy is enough. Both insert by the row's id, and the
   * queue skips the rows the stream already committed (README "Ledger", both copies).
   */
  private keep(row: LedgerRecord, line: string): Promise<void> | undefined {
    this.ledger.enqueue(row, line);
    return this.ledger.journalWritten;
  }

  /** `line`: the row serialised once, for the stream and the journal. */
  private settleOptions(line: string): SettleOptions {
    return this.store.carriesLedger ? { row: line } : {};
  }

  /** The tenant's stream made discoverable before its settle (no await once it is). */
  private announce(tenantId: string): Promise<void> | undefined {
    return this.store.carriesLedger ? this.stream.announce(tenantId) : undefined;
  }

  /**
   * The ledger row of a reservation: its id is the reservation id (one row per request,
   * whatever path it takes). One literal with every field, in one order: every row has the
   * same hidden class, which JSON.stringify (serializeRecord, once per row) walks fast.
   */
  private row(
    r: Reservation,
    prompt: number,
    completion: number,
    cost: number,
    meta: RequestMeta,
    cacheWriteTokens = 0,
    cacheReadTokens = 0,
  ): LedgerRecord {
    return {
      id: r.id,
      requestId: meta.requestId ?? null,
      tenantId: r.tenantId,
      userId: r.userId,
      apiKeyId: r.apiKeyId,
      model: (meta.model ?? r.model).slice(0, 200),
      provider: meta.provider.slice(0, 64),
      promptTokens: prompt,
      completionTokens: completion,
      cacheWriteTokens,
      cacheReadTokens,
      costMicros: cost,
      status: meta.status.slice(0, 32),
      latencyMs: meta.latencyMs ?? null,
      deployment: meta.deployment?.slice(0, 200) ?? null,
      attempts: meta.attempts ?? 1,
      createdAt: new Date(r.admittedAt),
    };
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
    return { tenantId: r.tenantId, reservationId: r.id, levels: r.levels, tpm: r.tpm };
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
    tpm: TpmState[] = [],
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
    // the tighter of the token quotas and the tokens-per-minute windows
    for (const w of tpm) {
      const remaining = w.limit - w.used;
      if (tokens.limit === null || remaining < tokens.remaining)
        tokens = { limit: w.limit, remaining, resetMs: w.resetMs };
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
