import { ApiError } from '@app/observability';
import type { CreateApiKeyDto } from './dto/api-key.dto';
import { applyKeyDefaults } from './key-defaults';

const NOW = Date.parse('2026-11-29T00:00:00Z');
const defaults = {
  quota_limit: 1000,
  max_budget: 5,
  quota_period: 'daily' as const,
  rate_limit_rpm: 10,
  allowed_models: ['a', 'b'],
  expires_in_days: 30,
};
const dto = (extra: Partial<CreateApiKeyDto> = {}): CreateApiKeyDto => ({ name: 'k', ...extra });
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as ApiError).code;
  }
  return undefined;
};

describe('applyKeyDefaults', () => {
  it('fills every field the create leaves out', () => {
    expect(applyKeyDefaults(dto(), defaults, true, NOW)).toMatchObject({
      quota_limit: 1000,
      max_budget: 5,
      quota_period: 'daily',
      rate_limit_rpm: 10,
      allowed_models: ['a', 'b'],
      expires_at: '2026-12-29T00:00:00.000Z',
    });
  });

  it('lets a member ask for less', () => {
    const out = applyKeyDefaults(
      dto({
        quota_limit: 1,
        max_budget: 0,
        rate_limit_rpm: 1,
        allowed_models: ['b'],
        expires_at: '2026-12-01T00:00:00Z',
      }),
      defaults,
      true,
      NOW,
    );
    expect(out).toMatchObject({ quota_limit: 1, max_budget: 0, rate_limit_rpm: 1, allowed_models: ['b'] });
  });

  it.each([
    [{ quota_limit: 1001 }],
    [{ quota_limit: null }],
    [{ max_budget: 5.01 }],
    [{ rate_limit_rpm: null }],
    [{ allowed_models: ['c'] }],
    [{ allowed_models: null }],
    [{ quota_period: 'monthly' as const }],
    [{ expires_at: '2027-01-01T00:00:00Z' }],
    [{ expires_at: null }],
  ])('refuses a member more than the defaults: %j', (extra) => {
    expect(code(() => applyKeyDefaults(dto(extra), defaults, true, NOW))).toBe('above_key_defaults');
  });

  it('lets an admin set anything, and a member anything where no default is set', () => {
    const big = dto({ quota_limit: null, allowed_models: null, expires_at: null, quota_period: 'monthly' });
    expect(applyKeyDefaults(big, defaults, false, NOW)).toMatchObject({
      quota_limit: null,
      expires_at: null,
    });
    expect(applyKeyDefaults(big, null, true, NOW)).toEqual(big);
  });
});
