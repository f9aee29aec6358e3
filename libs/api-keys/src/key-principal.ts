import type { Principal } from '@app/tenancy';
import type { KeyScope } from './scopes';

export type QuotaPeriod = 'none' | 'daily' | 'monthly';

/** Limits of one level (tenant, user or key). null = unlimited. */
export interface LimitSpec {
  tokenLimit: number | null;
  budgetUsd: number | null;
  period: QuotaPeriod;
  /** Tokens per minute (sliding 60 s window); null = unlimited. */
  rateLimitTpm: number | null;
}

/** What ApiKeyGuard attaches to `req.principal` for a virtual key. */
export interface KeyPrincipal extends Principal {
  kind: 'api-key';
  tenantId: string;
  /** null only for legacy keys that have no owner yet. */
  userId: string | null;
  apiKeyId: string;
  keyName: string;
  keyPrefix: string;
  /** null = every model. */
  allowedModels: string[] | null;
  rateLimitRpm: number | null;
  /** Endpoint scopes from `permissions` (scopes.ts); null = every endpoint. */
  scopes: KeyScope[] | null;
  limits: { tenant: LimitSpec; user: LimitSpec | null; key: LimitSpec };
}
