import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsEmail,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Length,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { IsOmittable, PageMeta, QuotaFieldsDto } from '@app/tenancy';
import type { KeyDefaults, User, UserStatus } from '../user.entity';

/** A model name as keys' `allowed_models` take it. */
export const MODEL_NAME = /^[\w.:/@-]{1,100}$/;
export const MODEL_NAME_MESSAGE = 'each model name must be 1-100 characters of letters, digits and ._:/@-';

/**
 * An admin's defaults for a user's new keys: applied where a create names none; a member
 * may only ask for less (lower limits, a subset of the models, an earlier expiry).
 */
export class KeyDefaultsDto extends QuotaFieldsDto {
  @ApiPropertyOptional({ example: 60, nullable: true, type: Number, description: 'Requests per minute' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  rate_limit_rpm?: number | null;

  @ApiPropertyOptional({ example: ['gpt-4o-mini'], nullable: true, type: [String] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Matches(MODEL_NAME, { each: true, message: MODEL_NAME_MESSAGE })
  allowed_models?: string[] | null;

  @ApiPropertyOptional({
    example: 90,
    nullable: true,
    type: Number,
    description: 'New keys expire after this many days',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3650)
  expires_in_days?: number | null;
}

/** The stored form (only the fields given). */
export function keyDefaultsFrom(dto: KeyDefaultsDto | null | undefined): KeyDefaults | null {
  if (!dto) return null;
  const out: KeyDefaults = {};
  for (const f of [
    'quota_limit',
    'max_budget',
    'quota_period',
    'rate_limit_rpm',
    'rate_limit_tpm',
    'allowed_models',
    'expires_in_days',
  ] as const) {
    if (dto[f] !== undefined) (out as Record<string, unknown>)[f] = dto[f];
  }
  return out;
}

const KEY_DEFAULTS_DOC = {
  type: KeyDefaultsDto,
  nullable: true,
  description:
    "Limits for this user's new keys (admins set them; a member may only ask for less); null = none",
};

export class CreateUserDto extends QuotaFieldsDto {
  @ApiProperty({ example: 'dev@acme.test' })
  @IsEmail()
  @MaxLength(254)
  email: string;

  @ApiProperty({ example: 'correct horse battery', minLength: 8 })
  @IsString()
  @Length(8, 200)
  password: string;

  @ApiProperty({ enum: ['admin', 'member'], example: 'member' })
  @IsIn(['admin', 'member'])
  role: 'admin' | 'member';

  @ApiPropertyOptional({ example: 'Dana Developer' })
  @IsOptional()
  @IsString()
  @Length(1, 100)
  name?: string;

  @ApiPropertyOptional(KEY_DEFAULTS_DOC)
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => KeyDefaultsDto)
  key_defaults?: KeyDefaultsDto | null;
}

export class UpdateUserDto extends QuotaFieldsDto {
  @ApiPropertyOptional()
  @IsOptional()
  @IsString()
  @Length(1, 100)
  name?: string;

  @ApiPropertyOptional({ minLength: 8 })
  @IsOmittable()
  @IsString()
  @Length(8, 200)
  password?: string;

  @ApiPropertyOptional({ enum: ['admin', 'member'] })
  @IsOmittable()
  @IsIn(['admin', 'member'])
  role?: 'admin' | 'member';

  @ApiPropertyOptional({ enum: ['active', 'disabled'] })
  @IsOmittable()
  @IsIn(['active', 'disabled'])
  status?: UserStatus;

  @ApiPropertyOptional(KEY_DEFAULTS_DOC)
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => KeyDefaultsDto)
  key_defaults?: KeyDefaultsDto | null;
}

export class UserResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty({ format: 'uuid' }) tenant_id: string;
  @ApiProperty() email: string;
  @ApiProperty({ nullable: true, type: String }) name: string | null;
  @ApiProperty({ enum: ['admin', 'member', 'system'] }) role: string;
  @ApiProperty({ enum: ['active', 'disabled'] }) status: UserStatus;
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
  @ApiProperty(KEY_DEFAULTS_DOC) key_defaults: KeyDefaults | null;
  @ApiProperty() created_at: string;
  @ApiProperty() updated_at: string;

  static from(u: User): UserResponse {
    return {
      id: u.id,
      tenant_id: u.tenantId,
      email: u.email,
      name: u.name,
      role: u.role,
      status: u.status,
      quota_limit: u.quotaLimit ?? null,
      max_budget: u.maxBudget ?? null,
      quota_period: u.quotaPeriod ?? 'none',
      rate_limit_tpm: u.rateLimitTpm ?? null,
      key_defaults: u.keyDefaults ?? null,
      created_at: u.createdAt.toISOString(),
      updated_at: u.updatedAt.toISOString(),
    };
  }
}

export class UserPage extends PageMeta {
  @ApiProperty({ type: [UserResponse] }) data: UserResponse[];
}

export class LoginDto {
  @ApiProperty({ example: 'admin@localhost' })
  @IsString()
  @Length(1, 254)
  email: string;

  @ApiProperty({ example: 'your-password' })
  @IsString()
  @Length(1, 200)
  password: string;

  @ApiPropertyOptional({
    description: 'Tenant name or id (e.g. acme): needed only when the email is a user in several tenants',
  })
  @IsOptional()
  @IsString()
  @Length(1, 100)
  tenant?: string;
}

export class LoginResponse {
  @ApiProperty({ description: 'JWT for `Authorization: Bearer ...`' }) access_token: string;
  @ApiProperty({ example: 'Bearer' }) token_type: 'Bearer';
  @ApiProperty({ description: 'Seconds until the token expires' }) expires_in: number;
  @ApiProperty({ type: UserResponse }) user: UserResponse;
}
