import { costMicros, microsToDecimal, microsToUsd, usdToMicros } from './pricing';

describe('costMicros', () => {
  it('USD per million tokens times tokens is micro-dollars', () => {
    expect(costMicros({ inputPerMillion: 2.5, outputPerMillion: 10 }, 1000, 500)).toBe(2500 + 5000);
    expect(costMicros({ inputPerMillion: 3, outputPerMillion: 15 }, 1_000_000, 0)).toBe(3_000_000);
  });

  it('float noise of prices like 0.15 does not add a micro-dollar', () => {
    // 0.15 * 3 = 0.44999999999999996 in floating point
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0.6 }, 3, 0)).toBe(1);
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0.6 }, 1000, 1000)).toBe(150 + 600);
    expect(costMicros({ inputPerMillion: 0.1, outputPerMillion: 0.2 }, 10, 10)).toBe(3);
  });

  it('rounds a fraction of a micro-dollar up (never under-charges)', () => {
    expect(costMicros({ inputPerMillion: 0.15, outputPerMillion: 0 }, 1, 0)).toBe(1);
    expect(costMicros({ inputPerMillion: 0, outputPerMillion: 0 }, 100, 100)).toBe(0);
  });

  it('refuses negative or fractional tokens and bad prices', () => {
    const p = { inputPerMillion: 1, outputPerMillion: 1 };
    expect(() => costMicros(p, -1, 0)).toThrow(RangeError);
    expect(() => costMicros(p, 1.5, 0)).toThrow(RangeError);
    expect(() => costMicros({ inputPerMillion: -1, outputPerMillion: 1 }, 1, 1)).toThrow(RangeError);
    expect(() => costMicros({ inputPerMillion: NaN, outputPerMillion: 1 }, 1, 1)).toThrow(RangeError);
  });
});

describe('USD conversions', () => {
  it('numeric strings convert exactly', () => {
    expect(usdToMicros('12.345678')).toBe(12_345_678);
    expect(usdToMicros('100')).toBe(100_000_000);
    expect(usdToMicros('0.1')).toBe(100_000);
    expect(usdToMicros(0.1 + 0.2)).toBe(300_000);
    expect(() => usdToMicros('abc')).toThrow(RangeError);
  });

  it('micros print as exact 6-decimal strings', () => {
    expect(microsToDecimal(12_345_678)).toBe('12.345678');
    expect(microsToDecimal(5)).toBe('0.000005');
    expect(microsToDecimal(0)).toBe('0.000000');
    expect(microsToUsd(1_500_000)).toBe(1.5);
  });
});
