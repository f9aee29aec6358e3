import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsISO8601, IsOptional, IsUUID, Matches, Max, Min } from 'class-validator';
import { AUDIT_ACTOR_TYPES, AuditEntry } from './audit-entry.entity';

export class AuditQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: 200, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit = 50;

  @ApiPropertyOptional({
    description: 'The `next_cursor` of the previous page (entries older than it)',
    example: '1042',
  })
  @IsOptional()
  @Matches(/^\d{1,18}$/, { message: 'cursor must be the next_cursor of a previous page' })
  cursor?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'Master key only: one tenant (default: all)' })
  @IsOptional()
  @IsUUID()
  tenant_id?: string;

  @ApiPropertyOptional({
    description: 'An action (`api_key.update`) or a family (`api_key.*`)',
    example: 'api_key.*',
  })
  @IsOptional()
  @Matches(/^[a-z_]{1,32}(\.([a-z_]{1,31}|\*))?$/, {
    message: 'action must look like api_key.update or api_key.*',
  })
  action?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'The tenant, user or key acted on' })
  @IsOptional()
  @IsUUID()
  target_id?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'The acting user' })
  @IsOptional()
  @IsUUID()
  actor_id?: string;

  @ApiPropertyOptional({ example: '2026-11-01T00:00:00Z', description: 'From (inclusive), ISO 8601' })
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'from must be an ISO 8601 date or date-time' })
  from?: string;

  @ApiPropertyOptional({ example: '2026-12-01T00:00:00Z', description: 'To (exclusive), ISO 8601' })
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'to must be an ISO 8601 date or date-time' })
  to?: string;
}

export class AuditEntryResponse {
  @ApiProperty({ example: '1042', description: 'Increasing; newest first' }) id: string;
  @ApiProperty({ format: 'date-time' }) created_at: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) tenant_id: string | null;
  @ApiProperty({ enum: AUDIT_ACTOR_TYPES }) actor_type: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) actor_id: string | null;
  @ApiProperty({ nullable: true, type: String, example: 'admin@acme.test' }) actor_label: string | null;
  @ApiProperty({ example: 'api_key.update' }) action: string;
  @ApiProperty({ enum: ['tenant', 'user', 'api_key'] }) target_type: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) target_id: string | null;
  @ApiProperty({
    nullable: true,
    type: String,
    description: "The key's name, user's email or tenant's name at the time",
    example: 'Billing service',
  })
  target_label: string | null;
  @ApiProperty({
    type: 'object',
    nullable: true,
    additionalProperties: true,
    description: 'Changed fields before (never a secret)',
    example: { quota_limit: 1000 },
  })
  before: Record<string, unknown> | null;
  @ApiProperty({
    type: 'object',
    nullable: true,
    additionalProperties: true,
    description: 'Changed fields after (never a secret)',
    example: { quota_limit: 5000 },
  })
  after: Record<string, unknown> | null;
  @ApiProperty({ nullable: true, type: String }) request_id: string | null;
  @ApiProperty({ nullable: true, type: String, example: '127.0.0.1' }) ip: string | null;

  static from(e: AuditEntry): AuditEntryResponse {
    return {
      id: e.id,
      created_at: e.createdAt.toISOString(),
      tenant_id: e.tenantId,
      actor_type: e.actorType,
      actor_id: e.actorId,
      actor_label: e.actorLabel,
      action: e.action,
      target_type: e.targetType,
      target_id: e.targetId,
      target_label: e.targetLabel,
      before: e.before,
      after: e.after,
      request_id: e.requestId,
      ip: e.ip,
    };
  }
}

export class AuditPage {
  @ApiProperty({ type: [AuditEntryResponse] }) data: AuditEntryResponse[];
  @ApiProperty({
    nullable: true,
    type: String,
    description: 'Pass as `cursor` for the next (older) page; null at the end',
  })
  next_cursor: string | null;
}
