/** USD per million tokens, from the routing table. */
export interface Pricing {
  inputPerMillion: number;
  outputPerMillion: number;
  /** Embeddings input; default inputPerMillion. */
  embeddingPerMillion?: number;
}

/** What an embeddings request costs per input token: the deployment's embedding price, else its input price. */
export function embeddingPricing(p: Pricing): Pricing {
  return { inputPerMillion: p.embeddingPerMillion ?? p.inputPerMillion, outputPerMillion: 0 };
}

/**
 * Cost in micro-USD: (USD per million tokens) x tokens is exactly micro-USD. Rounded to
 * six decimals first (0.15 x 1000 is 150.00000000000003 in floating point), then up, so
 * a fraction of a micro-dollar is never lost.
 */
export function costMicros(pricing: Pricing, promptTokens: number, completionTokens: number): number {
  const exact = promptTokens * pricing.inputPerMillion + completionTokens * pricing.outputPerMillion;
  return Math.ceil(Number(exact.toFixed(6)));
}
