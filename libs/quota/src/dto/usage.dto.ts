import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { REFUSAL_REASONS } from '@app/observability';
import { IsIn, IsInt, IsISO8601, IsOptional, IsUUID, Max, Min } from 'class-validator';

export const GROUP_BY = ['key', 'user', 'model', 'day'] as const;
export const SPLIT_BY = ['model', 'user', 'key'] as const;
export type SplitBy = (typeof SPLIT_BY)[number];

export class UsageRangeQuery {
  @ApiPropertyOptional({
    example: '2026-11-01T00:00:00Z',
    description: 'Start (inclusive), ISO 8601. Default: 30 days before `to`',
  })
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'from must be an ISO 8601 date or date-time' })
  from?: string;

  @ApiPropertyOptional({
    example: '2026-12-01T00:00:00Z',
    description: 'End (exclusive), ISO 8601. Default: now',
  })
  @IsOptional()
  @IsISO8601({ strict: true }, { message: 'to must be an ISO 8601 date or date-time' })
  to?: string;
}

export class UsageQuery extends UsageRangeQuery {
  @ApiPropertyOptional({ enum: GROUP_BY, default: 'day', description: '`day` uses QUOTA_TIMEZONE' })
  @IsOptional()
  @IsIn(GROUP_BY)
  group_by: (typeof GROUP_BY)[number] = 'day';

  @ApiPropertyOptional({
    format: 'uuid',
    description: 'Only this user (admins; members always see only their own)',
  })
  @IsOptional()
  @IsUUID()
  user_id?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'Only this API key' })
  @IsOptional()
  @IsUUID()
  api_key_id?: string;

  @ApiPropertyOptional({
    enum: SPLIT_BY,
    description:
      'With group_by=day only: one row per day and model, user or key (the stacked bars of the usage ' +
      'page). The `split_limit` series with the most spend in the range get rows of their own; the ' +
      'rest of each day is one row with `other: true`.',
  })
  @IsOptional()
  @IsIn(SPLIT_BY)
  split_by?: SplitBy;

  @ApiPropertyOptional({
    minimum: 1,
    maximum: 100,
    default: 10,
    description: 'With split_by: how many series get rows of their own',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  split_limit?: number;

  @ApiPropertyOptional({
    enum: ['json', 'csv'],
    default: 'json',
    description: 'csv: the same groups as text/csv (a header line, then one line per group)',
  })
  @IsOptional()
  @IsIn(['json', 'csv'])
  format?: 'json' | 'csv';
}

export class UsageTotals {
  @ApiProperty({ description: 'Requests settled or released (failed ones count with 0 tokens)' })
  requests: number;
  @ApiProperty() prompt_tokens: number;
  @ApiProperty() completion_tokens: number;
  @ApiProperty() total_tokens: number;
  @ApiProperty({ description: "Of the prompt tokens: written to the provider's prompt cache" })
  cache_write_tokens: number;
  @ApiProperty({ description: "Of the prompt tokens: read from the provider's prompt cache" })
  cache_read_tokens: number;
  @ApiProperty({ description: 'USD', example: 0.0123 }) cost_usd: number;
}

export class UsageRow extends UsageTotals {
  @ApiPropertyOptional({ format: 'uuid', description: 'group_by=key' }) api_key_id?: string;
  @ApiPropertyOptional({
    nullable: true,
    type: String,
    description: 'group_by=key (null when the key is gone)',
  })
  key_name?: string | null;
  @ApiPropertyOptional({ format: 'uuid', nullable: true, type: String, description: 'group_by=user' })
  user_id?: string | null;
  @ApiPropertyOptional({ description: 'group_by=model' }) model?: string;
  @ApiPropertyOptional({ example: '2026-11-22', description: 'group_by=day (QUOTA_TIMEZONE)' }) day?: string;
  @ApiPropertyOptional({
    description: 'split_by: this row folds the series past split_limit (its split columns are absent)',
  })
  other?: boolean;
}

export class UsageReportResponse {
  @ApiProperty({ example: 'list' }) object: 'list';
  @ApiProperty({ enum: GROUP_BY }) group_by: string;
  @ApiPropertyOptional({ enum: SPLIT_BY, description: 'Present when the rows are split (group_by=day)' })
  split_by?: SplitBy;
  @ApiProperty() from: string;
  @ApiProperty() to: string;
  @ApiProperty({
    type: [UsageRow],
    description: 'At most 1000 groups (split by: at most (split_limit + 1) rows per day)',
  })
  data: UsageRow[];
  @ApiProperty({ type: UsageTotals }) totals: UsageTotals;
}

export class CurrentPeriodUsage {
  @ApiProperty({ enum: ['none', 'daily', 'monthly'] }) period: string;
  @ApiProperty({ nullable: true, type: String, description: 'null for period none' }) period_start:
    string | null;
  @ApiProperty({ nullable: true, type: String }) period_end: string | null;
  @ApiProperty({
    nullable: true,
    type: Number,
    description: 'Live counter (in-flight reservations included); null when the quota store is unreachable',
  })
  tokens: number | null;
  @ApiProperty({ nullable: true, type: Number }) quota_limit: number | null;
  @ApiProperty({ nullable: true, type: Number }) spend_usd: number | null;
  @ApiProperty({ nullable: true, type: Number }) max_budget: number | null;
}

export class KeyUsageResponse extends UsageTotals {
  @ApiProperty({ example: 'api_key.usage' }) object: 'api_key.usage';
  @ApiProperty({ format: 'uuid' }) api_key_id: string;
  @ApiProperty() name: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) user_id: string | null;
  @ApiProperty() from: string;
  @ApiProperty() to: string;
  @ApiProperty({ type: CurrentPeriodUsage }) current_period: CurrentPeriodUsage;
}

export class RefusalRow {
  @ApiProperty({ example: '2026-11-29', description: 'Local day (QUOTA_TIMEZONE)' }) day: string;
  @ApiProperty({ enum: REFUSAL_REASONS, example: 'token_quota' }) reason: string;
  @ApiProperty({ example: 3 }) count: number;
}

export class RefusalsResponse {
  @ApiProperty({ example: 'list' }) object: 'list';
  @ApiProperty({ example: '2026-11-01T00:00:00.000Z' }) from: string;
  @ApiProperty({ example: '2026-12-01T00:00:00.000Z' }) to: string;
  @ApiProperty({ example: '2026-11-01', description: 'The first local day counted' }) from_day: string;
  @ApiProperty({ example: '2026-11-30', description: 'The last local day counted (included)' })
  to_day: string;
  @ApiProperty({
    type: [RefusalRow],
    description: 'Per day and reason, newest day first; days and reasons without refusals are absent',
  })
  data: RefusalRow[];
  @ApiProperty({
    description: 'Per reason over the range (every reason present, 0 when none)',
    example: {
      token_quota: 3,
      budget: 0,
      rpm: 12,
      tpm: 0,
      model_not_allowed: 1,
      key_expired: 0,
      key_revoked: 2,
      owner_disabled: 0,
    },
  })
  totals: Record<string, number>;
}

export class TenantLimitsResponse {
  @ApiProperty({ example: 'tenant.limits' }) object: 'tenant.limits';
  @ApiProperty({ format: 'uuid' }) tenant_id: string;
  @ApiProperty({ example: 'acme' }) name: string;
  @ApiProperty({
    type: CurrentPeriodUsage,
    description:
      "The tenant's limits (all its keys together) and its current reset period: the live counters " +
      '(in-flight reservations included) next to the limits',
    example: {
      period: 'monthly',
      period_start: '2026-11-01T00:00:00.000Z',
      period_end: '2026-12-01T00:00:00.000Z',
      tokens: 1234567,
      quota_limit: 5000000,
      spend_usd: 12.5,
      max_budget: 100,
    },
  })
  current_period: CurrentPeriodUsage;
  @ApiProperty({
    nullable: true,
    type: Number,
    example: 200000,
    description: 'Tokens per minute of the whole tenant (sliding 60 s window); null = unlimited',
  })
  rate_limit_tpm: number | null;
  @ApiProperty({
    description: "The ledger's figures for the same period (settled requests only; no reservations)",
    example: { requests: 812, total_tokens: 1230000, cost_usd: 12.43 },
  })
  ledger: { requests: number; total_tokens: number; cost_usd: number };
}
