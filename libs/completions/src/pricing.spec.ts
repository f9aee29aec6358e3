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
