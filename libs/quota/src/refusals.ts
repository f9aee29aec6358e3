import { ApiError } from '@app/observability';
import { formatDuration } from './headers';
import { microsToUsd } from './pricing';
import type { QuotaLevel, QuotaPeriod } from './quota.types';

const WHO: Record<QuotaLevel, string> = {
  key: 'this API key',
  user: 'your user',
  tenant: 'your organization',
};
const PER: Record<QuotaPeriod, string> = { none: 'in total', daily: 'per day', monthly: 'per month' };
const usd = (micros: number) => `$${microsToUsd(micros).toFixed(micros % 10000 === 0 ? 2 : 6)}`;

/** A period-less quota never resets: retrying cannot help, so clients are told not to. */
const NO_RESET_RETRY_SECONDS = 86400;

export interface QuotaRefusal {
  kind: 'tokens' | 'budget';
  level: QuotaLevel;
  period: QuotaPeriod;
  limit: number;
  used: number;
  requested: number;
  resetMs: number | null;
}

export function quotaExceeded(r: QuotaRefusal, headers: Record<string, string>): ApiError {
  const retrySeconds = r.resetMs === null ? NO_RESET_RETRY_SECONDS : Math.max(1, Math.ceil(r.resetMs / 1000));
  const when =
    r.resetMs === null
      ? 'It does not reset; ask an administrator to raise it.'
      : `It resets in ${formatDuration(r.resetMs)}.`;
  const message =
    r.kind === 'tokens'
      ? `Token quota exceeded for ${WHO[r.level]} (${r.level} level): limit ${r.limit} tokens ${PER[r.period]}, ` +
        `${r.used} used or reserved, this request needs at least ${r.requested}. ${when}`
      : `Budget exceeded for ${WHO[r.level]} (${r.level} level): limit ${usd(r.limit)} ${PER[r.period]}, ` +
        `${usd(r.used)} spent or reserved, this request needs at least ${usd(r.requested)}. ${when}`;
  return new ApiError(
    429,
    message,
    'insufficient_quota',
    r.kind === 'tokens' ? 'tokens_quota_exceeded' : 'budget_exceeded',
    {
      ...headers,
      'retry-after': String(retrySeconds),
      ...(r.resetMs === null ? { 'x-should-retry': 'false' } : {}),
    },
  );
}

export function rateLimited(limit: number, resetMs: number, headers: Record<string, string>): ApiError {
  const seconds = Math.max(1, Math.ceil(resetMs / 1000));
  return new ApiError(
    429,
    `Rate limit reached for this API key: limit ${limit} requests per minute. Retry in ${seconds}s.`,
    'rate_limit_exceeded',
    'rate_limit_exceeded',
    { ...headers, 'retry-after': String(seconds) },
  );
}

/**
 * 429 for a tokens-per-minute window: Retry-After is when enough tokens leave the window for
 * the least this request needs; without one it never fits (its least is above the limit).
 */
export function tpmLimited(
  o: { level: string; limit: number; used: number; requested: number; retryMs: number | null },
  headers: Record<string, string>,
): ApiError {
  const who = o.level === 'key' ? 'this API key' : `this ${o.level}`;
  if (o.retryMs === null)
    return new ApiError(
      429,
      `Request too large for the tokens-per-minute limit of ${who}: limit ${o.limit}, this request needs at least ${o.requested} tokens. Send a shorter prompt or a lower max_tokens.`,
      'rate_limit_exceeded',
      'rate_limit_exceeded',
      headers,
    );
  const seconds = Math.max(1, Math.ceil(o.retryMs / 1000));
  return new ApiError(
    429,
    `Rate limit reached for ${who}: limit ${o.limit} tokens per minute, used ${o.used}, requested at least ${o.requested}. Retry in ${seconds}s.`,
    'rate_limit_exceeded',
    'rate_limit_exceeded',
    { ...headers, 'retry-after': String(seconds) },
  );
}

export function modelNotAllowed(model: string): ApiError {
  return new ApiError(
    403,
    `This API key may not use the model "${model}"`,
    'permission_error',
    'model_not_allowed',
    {},
    'model',
  );
}

/** `cause` (the store's error) stays server-side: logged, never rendered. */
export function storeUnavailable(cause?: unknown): ApiError {
  const error = new ApiError(
    503,
    'Quota service unavailable: the quota store (Redis) cannot be reached, and the gateway refuses requests ' +
      'it cannot count (QUOTA_FAIL_MODE=closed). Retry shortly.',
    'server_error',
    'quota_unavailable',
    { 'retry-after': '5' },
  );
  error.cause = cause;
  return error;
}

export function ledgerFull(): ApiError {
  return new ApiError(
    503,
    'Usage ledger backlog is full (PostgreSQL unreachable?): new requests are refused until it drains. Retry shortly.',
    'server_error',
    'ledger_backlog_full',
    { 'retry-after': '5' },
  );
}
