import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsString, Length, Matches } from 'class-validator';
import type { Tenant, TenantStatus } from '../tenant.entity';
import { PageMeta } from './page.dto';
import { QuotaFieldsDto } from './quota-fields.dto';
import { IsOmittable } from './validation';

const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._-]*$/u;

export class CreateTenantDto extends QuotaFieldsDto {
  @ApiProperty({ example: 'acme', description: 'Unique (case-insensitive) tenant name' })
  @IsString()
  @Length(1, 100)
  @Matches(NAME, { message: 'name may hold letters, digits, space, dot, dash and underscore' })
  name: string;
}

export class UpdateTenantDto extends QuotaFieldsDto {
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
  @ApiProperty({
    type: Number,
    nullable: true,
    description: 'Tokens per minute (sliding 60 s window); null = unlimited',
  })
  rate_limit_tpm: number | null;
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
      rate_limit_tpm: t.rateLimitTpm ?? null,
      created_at: t.createdAt.toISOString(),
      updated_at: t.updatedAt.toISOString(),
    };
  }
}

export const MAX_LISTED_ADMINS = 10;

export class TenantAdmin {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty({ example: 'dana@acme.test' }) email: string;
  @ApiProperty({ enum: ['active', 'disabled'] }) status: 'active' | 'disabled';
}

/** A tenant as the list shows it: with its admins (the operator's page names who to call). */
export class TenantListItem extends TenantResponse {
  @ApiProperty({
    type: [TenantAdmin],
    description: `The tenant's admins by email, at most ${MAX_LISTED_ADMINS} (admin_count has them all)`,
  })
  admins: TenantAdmin[];
  @ApiProperty({ example: 2 }) admin_count: number;
}

export class TenantPage extends PageMeta {
  @ApiProperty({ type: [TenantListItem] }) data: TenantListItem[];
}
