import { Injectable, Optional } from '@nestjs/common';
import type { KeyPrincipal } from '@app/api-keys';
import { AppConfig } from '@app/config';
import type { Pricing } from './pricing';
import { assertModelAllowed, ProviderKind } from './routing/routing-table';

/** Who is calling: the virtual key's principal, passed to the meter as the guard made it. */
export type CompletionCaller = KeyPrincipal;

/**
 * What a request asks to be admitted for (the quota lib's AdmitRequest): its prompt, and
 * the completion it wants; the meter answers how much completion it may produce.
 */
export interface UsageEstimate {
  /** The model name as the client sent it (what allowedModels lists). */
  model: string;
  /** Never below the real count (tokens.ts). */
  promptTokens: number;
  /** The client's cap per choice (max_completion_tokens, else max_tokens); null = none sent. */
  wanted: number | null;
  /** The route's configured max output (routing `max_output_tokens`); null = not configured. */
  maxOutputTokens: number | null;
  /** OpenAI `n`. */
  choices: number;
  /** The prices a reservation assumes (the route's highest). */
  pricing: Pricing;
}

export interface Admission {
  /** Opaque to completions; handed back to settle or release exactly once. */
  reservation: unknown;
  /** Response headers, e.g. x-ratelimit-*, x-gateway-max-tokens. */
  headers: Record<string, string>;
  /** The cap to send upstream, per choice (always sent), and where a stream is cut. */
  grantedCompletionTokens: number;
}

/** What was used: the provider's figures, or the tokenizer's count of what was produced. */
export interface MeteredUsage {
  /** All prompt tokens, cached ones included. */
  promptTokens: number;
  completionTokens: number;
  costMicros: number;
  /** Of the prompt tokens: written to the provider's prompt cache (Anthropic cache_creation_input_tokens). */
  cacheWriteTokens?: number;
  /** Of the prompt tokens: read from the cache (Anthropic cache_read_input_tokens, OpenAI cached_tokens). */
  cacheReadTokens?: number;
}

/** Shaped like the quota lib's RequestMeta (ledger row), plus a few fields for logs. */
export interface UsageMeta {
  requestId?: string;
  /** The provider of the deployment that served (or failed last). */
  provider: ProviderKind;
  /** The upstream model that answered, when it differs from the requested name. */
  model?: string;
  /**
   * success; aborted (client left: charged for what was produced); upstream_error; error
   * (refused by the gateway); timeout (the total timeout after the upstream accepted: the
   * prompt is charged); cut (a stream past the grant, ended by the gateway).
   */
  status: 'success' | 'aborted' | 'upstream_error' | 'error' | 'timeout' | 'cut';
  /** From the request's arrival to the end of the answer. */
  latencyMs: number;
  /** `<model>#<index>` in the routing table: the one that answered (or failed last). */
  deployment: string;
  /** Upstream calls made for the request (1 = first try; retries and fallovers add). */
  attempts: number;
  stream: boolean;
  /** What the client got (200 for a stream, even one cut short). */
  httpStatus: number;
  /** Responses API: input tokens served from the upstream's cache (charged as input tokens). */
  cachedTokens?: number;
  /** Responses API: reasoning tokens (part of the output tokens charged). */
  reasoningTokens?: number;
}

/**
 * How completions charges (DI token; the quota lib's QuotaService implements it). `admit`
 * before any upstream call: it refuses a model the key may not use (403
 * model_not_allowed, see `assertModelAllowed`) and anything over a limit (429), by
 * throwing ApiError. Then exactly one of `settle` (the upstream answered, even partly:
 * real usage) or `release` (it failed before producing anything: nothing is charged).
 */
export abstract class UsageMeter {
  abstract admit(caller: CompletionCaller, estimate: UsageEstimate): Promise<Admission> | Admission;
  abstract settle(reservation: unknown, usage: MeteredUsage, meta: UsageMeta): Promise<unknown> | void;
  abstract release(reservation: unknown, meta: UsageMeta): Promise<unknown> | void;
}

/**
 * The default until a real meter is bound: enforces the key's allowed models, grants what
 * was wanted (the client's cap, else the route's max output, else QUOTA_DEFAULT_MAX_TOKENS),
 * records nothing.
 */
@Injectable()
export class NoopUsageMeter extends UsageMeter {
  constructor(@Optional() private readonly config?: AppConfig) {
    super();
  }

  admit(caller: CompletionCaller, estimate: UsageEstimate): Admission {
    assertModelAllowed(caller.allowedModels, estimate.model);
    const max = estimate.maxOutputTokens;
    const granted =
      estimate.wanted === null
        ? (max ?? this.config?.QUOTA_DEFAULT_MAX_TOKENS ?? 4096)
        : Math.min(estimate.wanted, max ?? Infinity);
    return { reservation: null, headers: {}, grantedCompletionTokens: granted };
  }
  settle(): void {}
  release(): void {}
}
