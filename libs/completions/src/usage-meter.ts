import { Injectable } from '@nestjs/common';
import type { ProviderKind } from './routing/routing-table';

/**
 * Who is calling: the fields of the virtual key's principal (`KeyPrincipal` from
 * @app/api-keys) completions reads. The whole principal is passed on to the meter.
 */
export interface CompletionCaller {
  tenantId: string;
  apiKeyId: string;
  /** null = every model. */
  allowedModels: string[] | null;
}

/** What a request may cost at most: prompt tokens plus its completion budget. */
export interface UsageEstimate {
  /** The canonical model name (aliases resolved). */
  model: string;
  estimatedTokens: number;
  estimatedCostMicros: number;
}

export interface Admission {
  /** Opaque to completions; handed back to settle or release exactly once. */
  reservation: unknown;
  /** Response headers, e.g. x-ratelimit-*. */
  headers: Record<string, string>;
}

/** What was used: the provider's figures, or the tokenizer's count of what was produced. */
export interface MeteredUsage {
  promptTokens: number;
  completionTokens: number;
  costMicros: number;
}

export interface UsageMeta {
  /** The canonical model name. */
  model: string;
  /** The deployment that served (or failed last); null when none was reached. */
  provider: ProviderKind | null;
  deployment: string | null;
  upstreamModel: string | null;
  stream: boolean;
  /** From the request's arrival to the end of the answer. */
  latencyMs: number;
  /** The HTTP status the client got (200 for a stream, even one cut short). */
  status: number;
  /** ok; client_aborted (disconnected, charged for what was produced); upstream_error. */
  outcome: 'ok' | 'client_aborted' | 'upstream_error';
  requestId?: string;
}

/**
 * How completions charges (DI token; the quota lib implements it). `admit` before any
 * upstream call (throws ApiError 429/403 to refuse); then exactly one of `settle` (the
 * upstream answered, even partly: real usage) or `release` (it failed before producing
 * anything: nothing is charged).
 */
export abstract class UsageMeter {
  abstract admit(caller: CompletionCaller, estimate: UsageEstimate): Promise<Admission> | Admission;
  abstract settle(reservation: unknown, usage: MeteredUsage, meta: UsageMeta): Promise<void> | void;
  abstract release(reservation: unknown, meta: UsageMeta): Promise<void> | void;
}

/** The default until a real meter is bound: admits everything, records nothing. */
@Injectable()
export class NoopUsageMeter extends UsageMeter {
  admit(): Admission {
    return { reservation: null, headers: {} };
  }
  settle(): void {}
  release(): void {}
}
