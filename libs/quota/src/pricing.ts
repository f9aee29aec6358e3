/** Per-model price: USD per million tokens (the routing table's `pricing`). */
export interface ModelPricing {
  inputPerMillion: number;
  outputPerMillion: number;
}

const MAX_MICROS = 1e13; // $10M for one request: far above any real call, far below 2^53

function count(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return n;
}

/**
 * Cost of a call in micro-dollars (integer). USD per million tokens times tokens is
 * exactly micro-dollars; the float noise of prices like 0.15 is rounded away at 1e-6
 * micro-dollar, then any fraction is rounded UP (a budget is never under-charged).
 */
export function costMicros(pricing: ModelPricing, promptTokens: number, completionTokens: number): number {
  const { inputPerMillion: i, outputPerMillion: o } = pricing;
  if (!(Number.isFinite(i) && i >= 0 && Number.isFinite(o) && o >= 0))
    throw new RangeError('pricing must be non-negative USD per million tokens');
  const exact = count('promptTokens', promptTokens) * i + count('completionTokens', completionTokens) * o;
  const micros = Math.ceil(Math.round(exact * 1e6) / 1e6);
  if (micros > MAX_MICROS) throw new RangeError('cost of one request above $10,000,000');
  return micros;
}

/** A USD amount (number, or a numeric column's string) as integer micro-dollars. */
export function usdToMicros(usd: number | string): number {
  if (typeof usd === 'string') {
    const m = /^(-?)(\d+)(?:\.(\d{0,6})\d*)?$/.exec(usd.trim());
    if (!m) throw new RangeError(`not a USD amount: ${usd}`);
    const micros = Number(m[2]) * 1e6 + Number((m[3] ?? '').padEnd(6, '0'));
    return m[1] ? -micros : micros;
  }
  if (!Number.isFinite(usd)) throw new RangeError('not a USD amount');
  return Math.round(usd * 1e6);
}

/** Integer micro-dollars as an exact decimal string with 6 places (for numeric columns). */
export function microsToDecimal(micros: number): string {
  const neg = micros < 0;
  const a = Math.abs(micros);
  const s = `${Math.floor(a / 1e6)}.${String(a % 1e6).padStart(6, '0')}`;
  return neg ? `-${s}` : s;
}

/** Micro-dollars as a USD number (for JSON and metrics). */
export const microsToUsd = (micros: number): number => Math.round(micros) / 1e6;
