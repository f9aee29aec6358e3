import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, IsString, Length, Matches } from 'class-validator';
import type { Tenant, TenantStatus } from '../tenant.entity';
import { PageMeta } from './page.dto';

const NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._-]*$/u;

export class CreateTenantDto {
  @ApiProperty({ example: 'acme', description: 'Unique (case-insensitive) tenant name' })
  @IsString()
  @Length(1, 100)
  @Matches(NAME, { message: 'name may hold letters, digits, space, dot, dash and underscore' })
  name: string;
}

export class UpdateTenantDto {
  @ApiPropertyOptional({ example: 'acme-eu' })
  @IsOptional()
  @IsString()
  @Length(1, 100)
  @Matches(NAME, { message: 'name may hold letters, digits, space, dot, dash and underscore' })
  name?: string;

  @ApiPropertyOptional({
    enum: ['active', 'disabled'],
    description: 'disabled: logins and keys of the tenant are refused',
  })
  @IsOptional()
  @IsIn(['active', 'disabled'])
  status?: TenantStatus;
}

export class TenantResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() name: string;
  @ApiProperty({ enum: ['active', 'disabled'] }) status: TenantStatus;
  @ApiProperty() created_at: string;
  @ApiProperty() updated_at: string;

  static from(t: Tenant): TenantResponse {
    return {
      id: t.id,
      name: t.name,
      status: t.status,
      created_at: t.createdAt.toISOString(),
      updated_at: t.updatedAt.toISOString(),
    };
  }
}

export class TenantPage extends PageMeta {
  @ApiProperty({ type: [TenantResponse] }) data: TenantResponse[];
}
