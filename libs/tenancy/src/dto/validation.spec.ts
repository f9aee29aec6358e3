import { IsIn, IsOptional, IsString, validateSync } from 'class-validator';
import { plainToInstance } from 'class-transformer';
import { UpdateTenantDto } from './tenant.dto';
import { IsOmittable } from './validation';

class Dto {
  @IsOmittable()
  @IsIn(['a', 'b'])
  mode?: string;

  @IsOptional()
  @IsString()
  note?: string | null;
}

/** The properties a plain body fails on, as the global ValidationPipe would see them. */
const invalid = (cls: new () => object, plain: object) =>
  validateSync(plainToInstance(cls, plain) as object)
    .map((e) => e.property)
    .sort();

describe('IsOmittable', () => {
  it('lets a field be left out but validates null, unlike IsOptional', () => {
    expect(invalid(Dto, {})).toEqual([]);
    expect(invalid(Dto, { mode: 'a', note: null })).toEqual([]);
    expect(invalid(Dto, { mode: null })).toEqual(['mode']);
  });

  it('PATCH /api/v1/tenants/:id cannot null a NOT NULL column (a 500 from PostgreSQL before)', () => {
    expect(invalid(UpdateTenantDto, { name: null, status: null, quota_period: null })).toEqual([
      'name',
      'quota_period',
      'status',
    ]);
    expect(invalid(UpdateTenantDto, { quota_limit: null, max_budget: null })).toEqual([]);
  });
});
