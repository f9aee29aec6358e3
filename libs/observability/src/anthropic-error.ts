import { Catch } from '@nestjs/common';
import type { Response } from 'express';
import { AllExceptionsFilter } from './all-exceptions.filter';
import type { ErrorBody } from './api-error';

/** Anthropic's error body: `{"type":"error","error":{"type":"rate_limit_error","message":"..."}}`. */
export interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string };
  request_id?: string;
}

/** The Anthropic-format routes (POST /v1/messages, /v1/messages/count_tokens, also under /api). */
export function isAnthropicPath(path: string): boolean {
  return /\/v1\/messages(\/count_tokens)?\/?$/.test(path);
}

/** Anthropic's error type for a status (https://docs.anthropic.com/en/api/errors). */
export function anthropicErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 402) return 'billing_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status === 503 || status === 529) return 'overloaded_error';
  if (status === 504) return 'timeout_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

export function toAnthropicErrorBody(status: number, body: ErrorBody): AnthropicErrorBody {
  const { message, request_id } = body.error;
  return {
    type: 'error',
    error: { type: anthropicErrorType(status), message },
    ...(request_id ? { request_id } : {}),
  };
}

/** Go-style duration (`1s`, `6m0s`, `250ms`) in milliseconds; undefined when not one. */
function durationMs(d: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(d);
  if (!m || d === '') return undefined;
  const [, h, mi, s, ms] = m.map((x) => Number(x ?? 0));
  return ((h * 60 + mi) * 60 + s) * 1000 + ms;
}

const PAIRS: [openai: string, anthropic: string][] = [
  ['x-ratelimit-limit-requests', 'anthropic-ratelimit-requests-limit'],
  ['x-ratelimit-remaining-requests', 'anthropic-ratelimit-requests-remaining'],
  ['x-ratelimit-limit-tokens', 'anthropic-ratelimit-tokens-limit'],
  ['x-ratelimit-remaining-tokens', 'anthropic-ratelimit-tokens-remaining'],
];
const RESETS: [openai: string, anthropic: string][] = [
  ['x-ratelimit-reset-requests', 'anthropic-ratelimit-requests-reset'],
  ['x-ratelimit-reset-tokens', 'anthropic-ratelimit-tokens-reset'],
];

/**
 * Anthropic's `anthropic-ratelimit-*` headers beside the x-ratelimit-* ones (same figures;
 * Anthropic gives resets as RFC 3339 instants where OpenAI gives durations).
 */
export function anthropicRateLimitHeaders(
  headers: Record<string, string>,
  now = Date.now(),
): Record<string, string> {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const out: Record<string, string> = {};
  for (const [o, a] of PAIRS) if (lower[o] !== undefined) out[a] = lower[o];
  for (const [o, a] of RESETS) {
    const ms = lower[o] === undefined ? undefined : durationMs(lower[o]);
    if (ms !== undefined) out[a] = new Date(now + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
  return out;
}

/**
 * The error body of the Anthropic-format routes: the same mapping as AllExceptionsFilter
 * (one place decides status and message), rendered in Anthropic's shape, with
 * `anthropic-ratelimit-*` headers beside `retry-after` and `x-ratelimit-*`.
 */
@Catch()
export class AnthropicExceptionFilter extends AllExceptionsFilter {
  protected override render(
    res: Response,
    status: number,
    body: ErrorBody,
    headers: Record<string, string>,
  ): void {
    for (const [k, v] of Object.entries({ ...headers, ...anthropicRateLimitHeaders(headers) }))
      res.setHeader(k, v);
    res.status(status).json(toAnthropicErrorBody(status, body));
  }
}
