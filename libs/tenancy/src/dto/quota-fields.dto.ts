import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsNumber, IsOptional, Max, Min } from 'class-validator';
import { IsOmittable } from './validation';

export type QuotaPeriodName = 'none' | 'daily' | 'monthly';

/**
 * The limits every level has (tenant, user, key), as the admin API takes them; the quota lib
 * enforces them. null = unlimited; absent = unchanged.
 */
export class QuotaFieldsDto {
  @ApiPropertyOptional({
    type: Number,
    nullable: true,
    minimum: 0,
    example: 1000000,
    description:
      'Token quota per reset period (for a tenant or user: all its keys together); null = unlimited',
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
    description:
      'USD budget per reset period (for a tenant or user: all its keys together); null = unlimited',
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
  quota_period?: QuotaPeriodName;

  @ApiPropertyOptional({
    type: Number,
    nullable: true,
    minimum: 1,
    example: 100000,
    description:
      'Tokens per minute (sliding 60 s window; for a tenant or user: all its keys together): each request holds its ' +
      'reservation (prompt + granted completion) in the window, corrected to its actual tokens when it ends; null = unlimited',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(2_000_000_000)
  rate_limit_tpm?: number | null;
}

/** The quota fields that were sent, as entity properties (absent = unchanged). */
export function quotaPatch(dto: QuotaFieldsDto): {
  quotaLimit?: number | null;
  maxBudget?: number | null;
  quotaPeriod?: QuotaPeriodName;
  rateLimitTpm?: number | null;
} {
  const patch: {
    quotaLimit?: number | null;
    maxBudget?: number | null;
    quotaPeriod?: QuotaPeriodName;
    rateLimitTpm?: number | null;
  } = {};
  if (dto.quota_limit !== undefined) patch.quotaLimit = dto.quota_limit;
  if (dto.max_budget !== undefined) patch.maxBudget = dto.max_budget;
  if (dto.quota_period !== undefined) patch.quotaPeriod = dto.quota_period;
  if (dto.rate_limit_tpm !== undefined) patch.rateLimitTpm = dto.rate_limit_tpm;
  return patch;
}
