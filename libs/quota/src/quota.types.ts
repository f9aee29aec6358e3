/** Reset period of a limit: never, at local midnight, or on the 1st of the month (QUOTA_TIMEZONE). */
export type QuotaPeriod = 'none' | 'daily' | 'monthly';

/** The three levels a request is counted at, narrowest last. */
export type QuotaLevel = 'tenant' | 'user' | 'key';

/** Limits of one level. null = unlimited. Same shape as `LimitSpec` of @app/api-keys. */
export interface QuotaLimits {
  tokenLimit: number | null;
  budgetUsd: number | null;
  period: QuotaPeriod;
  /** Tokens per minute (sliding window, all the level's keys together); null/absent = unlimited. */
  rateLimitTpm?: number | null;
}

/**
 * Who a request is counted against. Structurally a subset of the api-keys `KeyPrincipal`,
 * so the guard's principal is passed as is (quota does not import @app/api-keys).
 */
export interface QuotaSubject {
  tenantId: string;
  /** null for a legacy key without an owner: no user level then. */
  userId: string | null;
  apiKeyId: string;
  rateLimitRpm: number | null;
  /** null = every model. */
  allowedModels: string[] | null;
  limits: { tenant: QuotaLimits; user: QuotaLimits | null; key: QuotaLimits };
}
