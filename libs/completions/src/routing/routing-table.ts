import { ApiError } from '@app/observability';
import type { Pricing } from '../pricing';

export const PROVIDER_KINDS = ['openai', 'anthropic', 'mock'] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

/** The OpenAI-compatible endpoints a deployment can serve (same names as the key scopes). */
export const ENDPOINTS = ['chat', 'embeddings', 'responses'] as const;
export type Endpoint = (typeof ENDPOINTS)[number];

/** What each provider can serve; a deployment's `endpoints` may narrow it (e.g. a vLLM without /responses). */
export const PROVIDER_ENDPOINTS: Record<ProviderKind, readonly Endpoint[]> = {
  openai: ['chat', 'embeddings', 'responses'],
  anthropic: ['chat'],
  mock: ['chat', 'embeddings', 'responses'],
};

/** How a model spreads requests over its healthy deployments (docs/models.md, "Routing"). */
export const STRATEGIES = ['order', 'weighted', 'least-busy'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** Per-deployment overrides of the UPSTREAM_*_TIMEOUT_MS settings (unset = the setting). */
export interface TimeoutOverrides {
  connectMs?: number;
  /** Streams: until the first chunk. */
  firstByteMs?: number;
  /** Streams: between two chunks. */
  idleMs?: number;
  /** One exchange with this deployment; never longer than what UPSTREAM_TOTAL_TIMEOUT_MS leaves. */
  totalMs?: number;
}

/** Where a deployment stands in its model's load balancing. */
export interface DeploymentRouting {
  /** `weighted` strategy: its share is weight / sum of weights; 0 = only when the others fail. */
  weight: number;
  timeouts: TimeoutOverrides;
}

export const DEFAULT_DEPLOYMENT_ROUTING: DeploymentRouting = Object.freeze({
  weight: 1,
  timeouts: Object.freeze({}),
});

/** Options of the built-in mock provider (docs/models.md). */
export interface MockOptions {
  /** Fixed answer; default: one derived from the last user message. */
  reply?: string;
  /** Delay before the answer (or the first chunk). */
  latencyMs: number;
  /** Delay between stream chunks. */
  chunkDelayMs: number;
  /** Reported usage, overriding the tokenizer count. */
  promptTokens?: number;
  completionTokens?: number;
}

export interface AnthropicOptions {
  /** The `anthropic-version` header. */
  version: string;
}

/** One place a model is served. The credential is resolved at load and never enumerable. */
export class Deployment {
  declare readonly apiKey: string | undefined;

  constructor(
    /** `<model>#<index>`, for logs and the ledger. */
    readonly id: string,
    readonly provider: ProviderKind,
    /** The model name sent upstream. */
    readonly model: string,
    /** Origin plus path prefix, no trailing slash; '' for mock. */
    readonly baseUrl: string,
    readonly pricing: Pricing,
    readonly maxConnections: number,
    readonly mock: MockOptions | undefined,
    readonly anthropic: AnthropicOptions | undefined,
    apiKey: string | undefined,
    /** `max_output_tokens`: the most this deployment may write per choice; null = not set. */
    readonly maxOutputTokens: number | null = null,
    /** The endpoints it serves (default: all its provider can). */
    readonly endpoints: readonly Endpoint[] = PROVIDER_ENDPOINTS[provider],
    readonly routing: DeploymentRouting = DEFAULT_DEPLOYMENT_ROUTING,
  ) {
    // Not enumerable: a deployment logged or serialised never carries the secret.
    Object.defineProperty(this, 'apiKey', { value: apiKey, enumerable: false });
  }
}

export interface ModelRoute {
  name: string;
  aliases: string[];
  /** The next healthy one serves on a 429, a connection error or 5xx before the first byte. */
  deployments: Deployment[];
  /** Which healthy deployment goes first (default `order`: as listed). */
  strategy: Strategy;
  /** The highest prices among the deployments: what a reservation assumes. */
  maxPricing: Pricing;
  /** The least `max_output_tokens` among the deployments (any may serve); null = none set. */
  maxOutputTokens: number | null;
}

/** The deployments of a route that serve `endpoint`, in order. */
export function deploymentsFor(route: ModelRoute, endpoint: Endpoint): Deployment[] {
  return route.deployments.filter((d) => d.endpoints.includes(endpoint));
}

/** The endpoints a route serves (any of its deployments), in ENDPOINTS order. */
export function endpointsOf(route: ModelRoute): Endpoint[] {
  return ENDPOINTS.filter((e) => route.deployments.some((d) => d.endpoints.includes(e)));
}

/** Model name or alias -> route. Built by `loadRoutingTable` (routing-loader.ts). */
export class RoutingTable {
  private readonly byName = new Map<string, ModelRoute>();

  constructor(
    readonly routes: ModelRoute[],
    /** Where it came from, for messages: the file, or "built-in mock models". */
    readonly source: string,
  ) {
    for (const r of routes) for (const n of [r.name, ...r.aliases]) this.byName.set(n, r);
  }

  resolve(model: string): ModelRoute | undefined {
    return this.byName.get(model);
  }

  /** Every callable name (canonical names and aliases) with its route. */
  names(): { name: string; route: ModelRoute }[] {
    return this.routes.flatMap((route) => [route.name, ...route.aliases].map((name) => ({ name, route })));
  }
}

/**
 * null = every model; otherwise the exact name the client calls must be listed (an alias is
 * a name of its own), as the quota lib's checkModel does.
 */
export function isModelAllowed(allowed: readonly string[] | null, name: string): boolean {
  return allowed === null || allowed.includes(name);
}

/** 403 model_not_allowed unless the key may call `name` (what every UsageMeter's admit checks first). */
export function assertModelAllowed(allowed: readonly string[] | null, name: string): void {
  if (!isModelAllowed(allowed, name))
    throw new ApiError(
      403,
      `This API key may not use the model "${name}"`,
      'permission_error',
      'model_not_allowed',
      {},
      'model',
    );
}
