import { costMicros } from './pricing';

describe('costMicros', () => {
  it('USD per million tokens x tokens = micro-USD', () => {
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0.6 }, 1000, 500)).toBe(450);
    expect(costMicros({ inputPerMillion: 3, outputPerMillion: 15 }, 1_000_000, 1_000_000)).toBe(18_000_000);
  });
  it('does not round floating-point noise up, but rounds real fractions up', () => {
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0 }, 1000, 0)).toBe(150);
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0 }, 3, 0)).toBe(1);
    expect(costMicros({ inputPerMillion: 0, outputPerMillion: 0 }, 123, 456)).toBe(0);
  });
});

describe('costMicros with prompt caching', () => {
  const p = {
    inputPerMillion: 3,
    outputPerMillion: 15,
    cacheWritePerMillion: 3.75,
    cacheReadPerMillion: 0.3,
  };
  it('prices cache writes and reads at their own rates, the rest of the prompt at the input rate', () => {
    // 100 uncached x 3 + 1000 written x 3.75 + 2000 read x 0.3 + 50 x 15
    expect(costMicros(p, 3100, 50, { cacheWriteTokens: 1000, cacheReadTokens: 2000 })).toBe(
      300 + 3750 + 600 + 750,
    );
  });
  it('without cache prices, cached tokens cost the input price', () => {
    expect(
      costMicros({ inputPerMillion: 1, outputPerMillion: 2 }, 10, 0, {
        cacheReadTokens: 4,
        cacheWriteTokens: 3,
      }),
    ).toBe(10);
  });
});
