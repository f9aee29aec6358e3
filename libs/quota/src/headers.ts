/**
 * OpenAI's rate-limit headers. Values follow OpenAI: counts as integers, resets as Go-style
 * durations (`1s`, `6m0s`, `250ms`). A dimension with no limit reports
 * Number.MAX_SAFE_INTEGER as limit and remaining and `0s` as reset, so every response
 * carries all six and no client throttles itself on a missing figure.
 */
export const UNLIMITED = Number.MAX_SAFE_INTEGER;

/** `0s`, `250ms`, `12s`, `6m0s`, `1h2m3s` (whole seconds rounded up above 1 s). */
export function formatDuration(ms: number): string {
  if (!(ms > 0)) return '0s';
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  let s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

export interface Dimension {
  limit: number | null;
  remaining: number;
  resetMs: number;
}

export function rateLimitHeaders(requests: Dimension, tokens: Dimension): Record<string, string> {
  const lim = (d: Dimension) => String(d.limit ?? UNLIMITED);
  const rem = (d: Dimension) => String(d.limit === null ? UNLIMITED : Math.max(0, Math.floor(d.remaining)));
  const reset = (d: Dimension) => (d.limit === null ? '0s' : formatDuration(d.resetMs));
  return {
    'x-ratelimit-limit-requests': lim(requests),
    'x-ratelimit-remaining-requests': rem(requests),
    'x-ratelimit-reset-requests': reset(requests),
    'x-ratelimit-limit-tokens': lim(tokens),
    'x-ratelimit-remaining-tokens': rem(tokens),
    'x-ratelimit-reset-tokens': reset(tokens),
  };
}
