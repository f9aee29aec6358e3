import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsNumber, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';
import type { Tenant, TenantStatus } from '../tenant.entity';
import { PageMeta } from './page.dto';
import { IsOmittable } from './validation';

const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._-]*$/u;

/** Quota fields of a tenant, enforced by the quota lib at the tenant level; null = unlimited. */
export class TenantQuotaFields {
  @ApiPropertyOptional({
    type: Number,
    nullable: true,
    minimum: 0,
    example: 1000000,
    description: 'Token quota per reset period (all keys of the tenant together); null = unlimited',
  })
  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(Number.MAX_SAFE_INTEGER)
  quota_limit?: number | null;

  @ApiPropertyOptional({
    type: Number,
    nullable: true,
    minimum: 0,
    example: 250.5,
    description: 'USD budget per reset period (all keys of the tenant together); null = unlimited',
  })
  @IsOptional()
  @IsNumber(
    { allowNaN: false, allowInfinity: false, maxDecimalPlaces: 6 },
    { message: 'max_budget must be a USD amount with at most 6 decimals, or null' },
  )
  @Min(0)
  @Max(99999999.999999)
  max_budget?: number | null;

  @ApiPropertyOptional({
    enum: ['none', 'daily', 'monthly'],
    description: 'When quota and budget reset: never, daily or monthly (QUOTA_TIMEZONE)',
  })
  @IsOmittable()
  @IsIn(['none', 'daily', 'monthly'])
  quota_period?: 'none' | 'daily' | 'monthly';
}

/** The quota fields that were sent, as entity properties (absent = unchanged). */
export function quotaPatch(
  dto: TenantQuotaFields,
): Partial<Pick<Tenant, 'quotaLimit' | 'maxBudget' | 'quotaPeriod'>> {
  const patch: Partial<Pick<Tenant, 'quotaLimit' | 'maxBudget' | 'quotaPeriod'>> = {};
  if (dto.quota_limit !== undefined) patch.quotaLimit = dto.quota_limit;
  if (dto.max_budget !== undefined) patch.maxBudget = dto.max_budget;
  if (dto.quota_period !== undefined) patch.quotaPeriod = dto.quota_period;
  return patch;
}

export class CreateTenantDto extends TenantQuotaFields {
  @ApiProperty({ example: 'acme', description: 'Unique (case-insensitive) tenant name' })
  @IsString()
  @Length(1, 100)
  @Matches(NAME, { message: 'name may hold letters, digits, space, dot, dash and underscore' })
  name: string;
}

export class UpdateTenantDto extends TenantQuotaFields {
  @ApiPropertyOptional({ example: 'acme-eu' })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  @Matches(NAME, { message: 'name may hold letters, digits, space, dot, dash and underscore' })
  name?: string;

  @ApiPropertyOptional({
    enum: ['active', 'disabled'],
    description: 'disabled: logins and keys of the tenant are refused',
  })
  @IsOmittable()
  @IsIn(['active', 'disabled'])
  status?: TenantStatus;
}

export class TenantResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() name: string;
  @ApiProperty({ enum: ['active', 'disabled'] }) status: TenantStatus;
  @ApiProperty({ type: Number, nullable: true, description: 'Token quota per period; null = unlimited' })
  quota_limit: number | null;
  @ApiProperty({ type: Number, nullable: true, description: 'USD budget per period; null = unlimited' })
  max_budget: number | null;
  @ApiProperty({ enum: ['none', 'daily', 'monthly'] }) quota_period: 'none' | 'daily' | 'monthly';
  @ApiProperty() created_at: string;
  @ApiProperty() updated_at: string;

  static from(t: Tenant): TenantResponse {
    return {
      id: t.id,
      name: t.name,
      status: t.status,
      quota_limit: t.quotaLimit ?? null,
      max_budget: t.maxBudget ?? null,
      quota_period: t.quotaPeriod ?? 'none',
      created_at: t.createdAt.toISOString(),
      updated_at: t.updatedAt.toISOString(),
    };
  }
}

export class TenantPage extends PageMeta {
  @ApiProperty({ type: [TenantResponse] }) data: TenantResponse[];
}
