/** USD per million tokens, from the routing table. */
export interface Pricing {
  inputPerMillion: number;
  outputPerMillion: number;
  /** Prompt tokens written to the provider's cache (Anthropic cache_creation_input_tokens); default: the input price. */
  cacheWritePerMillion?: number;
  /** Prompt tokens read from the cache (Anthropic cache_read_input_tokens, OpenAI cached_tokens); default: the input price. */
  cacheReadPerMillion?: number;
  /** Embeddings input; default inputPerMillion. */
  embeddingPerMillion?: number;
}

/** Prompt tokens that went through the provider's prompt cache (part of the prompt tokens). */
export interface CachedTokens {
  cacheWriteTokens?: number;
  cacheReadTokens?: number;
}

/** What an embeddings request costs per input token: the deployment's embedding price, else its input price. */
export function embeddingPricing(p: Pricing): Pricing {
  return { inputPerMillion: p.embeddingPerMillion ?? p.inputPerMillion, outputPerMillion: 0 };
}

/**
 * Cost in micro-USD: (USD per million tokens) x tokens is exactly micro-USD. Rounded to
 * six decimals first (0.15 x 1000 is 150.00000000000003 in floating point), then up, so
 * a fraction of a micro-dollar is never lost. `promptTokens` includes the cached ones;
 * those are priced at their own rates.
 */
export function costMicros(
  pricing: Pricing,
  promptTokens: number,
  completionTokens: number,
  cached: CachedTokens = {},
): number {
  const write = cached.cacheWriteTokens ?? 0;
  const read = cached.cacheReadTokens ?? 0;
  const exact =
    Math.max(0, promptTokens - write - read) * pricing.inputPerMillion +
    write * (pricing.cacheWritePerMillion ?? pricing.inputPerMillion) +
    read * (pricing.cacheReadPerMillion ?? pricing.inputPerMillion) +
    completionTokens * pricing.outputPerMillion;
  return Math.ceil(Number(exact.toFixed(6)));
}
