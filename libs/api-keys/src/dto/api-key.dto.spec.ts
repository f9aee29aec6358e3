// the libs' barrels import each other: load them in the app's order first
import '@app/observability';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { UpdateApiKeyDto } from './api-key.dto';

const invalid = (plain: object) =>
  validateSync(plainToInstance(UpdateApiKeyDto, plain))
    .map((e) => e.property)
    .sort();

describe('UpdateApiKeyDto', () => {
  it('refuses null for name and quota_period (a 500 from PostgreSQL before); null still means unlimited', () => {
    expect(invalid({ name: null, quota_period: null })).toEqual(['name', 'quota_period']);
    expect(
      invalid({
        quota_limit: null,
        max_budget: null,
        rate_limit_rpm: null,
        allowed_models: null,
        expires_at: null,
      }),
    ).toEqual([]);
  });
});
