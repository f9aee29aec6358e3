import { formatDuration, rateLimitHeaders, UNLIMITED } from './headers';

describe('formatDuration (OpenAI style)', () => {
  it.each([
    [0, '0s'],
    [-5, '0s'],
    [250, '250ms'],
    [1000, '1s'],
    [1001, '2s'],
    [59_000, '59s'],
    [360_000, '6m0s'],
    [3_723_000, '1h2m3s'],
  ])('%d ms -> %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('rateLimitHeaders', () => {
  it('always the six headers; unlimited dimensions say so with a large number', () => {
    const h = rateLimitHeaders(
      { limit: 60, remaining: 59, resetMs: 60_000 },
      { limit: null, remaining: 0, resetMs: 0 },
    );
    expect(h).toEqual({
      'x-ratelimit-limit-requests': '60',
      'x-ratelimit-remaining-requests': '59',
      'x-ratelimit-reset-requests': '1m0s',
      'x-ratelimit-limit-tokens': String(UNLIMITED),
      'x-ratelimit-remaining-tokens': String(UNLIMITED),
      'x-ratelimit-reset-tokens': '0s',
    });
  });

  it('remaining never goes below zero', () => {
    const h = rateLimitHeaders(
      { limit: 1, remaining: -3, resetMs: 1 },
      { limit: 10, remaining: -5, resetMs: 1 },
    );
    expect(h['x-ratelimit-remaining-requests']).toBe('0');
    expect(h['x-ratelimit-remaining-tokens']).toBe('0');
  });
});
