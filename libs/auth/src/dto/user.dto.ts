import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsEmail, IsOptional, IsString, Length, MaxLength } from 'class-validator';
import { IsOmittable, PageMeta, QuotaFieldsDto } from '@app/tenancy';
import type { User, UserStatus } from '../user.entity';

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
}

export class LoginResponse {
  @ApiProperty({ description: 'JWT for `Authorization: Bearer ...`' }) access_token: string;
  @ApiProperty({ example: 'Bearer' }) token_type: 'Bearer';
  @ApiProperty({ description: 'Seconds until the token expires' }) expires_in: number;
  @ApiProperty({ type: UserResponse }) user: UserResponse;
}
