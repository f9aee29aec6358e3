import {
  anthropicErrorType,
  anthropicRateLimitHeaders,
  isAnthropicPath,
  toAnthropicErrorBody,
} from './anthropic-error';

describe('Anthropic error shape', () => {
  it('maps statuses to Anthropic error types', () => {
    expect([400, 401, 403, 404, 429, 500, 502, 503, 504].map(anthropicErrorType)).toEqual([
      'invalid_request_error',
      'authentication_error',
      'permission_error',
      'not_found_error',
      'rate_limit_error',
      'api_error',
      'api_error',
      'overloaded_error',
      'timeout_error',
    ]);
    expect(
      toAnthropicErrorBody(429, { error: { message: 'slow down', type: 'insufficient_quota', code: 'x' } }),
    ).toEqual({ type: 'error', error: { type: 'rate_limit_error', message: 'slow down' } });
  });

  it('adds anthropic-ratelimit-* beside x-ratelimit-*, resets as RFC 3339 instants', () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 0);
    expect(
      anthropicRateLimitHeaders(
        {
          'x-ratelimit-limit-tokens': '10',
          'x-ratelimit-remaining-tokens': '0',
          'x-ratelimit-reset-tokens': '6m30s',
          'x-ratelimit-reset-requests': '250ms',
          'Retry-After': '3',
        },
        now,
      ),
    ).toEqual({
      'anthropic-ratelimit-tokens-limit': '10',
      'anthropic-ratelimit-tokens-remaining': '0',
      'anthropic-ratelimit-tokens-reset': '2026-01-01T00:06:30Z',
      'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:00Z',
    });
  });

  it('knows the Anthropic routes', () => {
    expect(['/v1/messages', '/api/v1/messages', '/v1/messages/count_tokens'].map(isAnthropicPath)).toEqual([
      true,
      true,
      true,
    ]);
    expect(isAnthropicPath('/v1/chat/completions')).toBe(false);
  });
});
