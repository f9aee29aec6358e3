import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsDateString,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  IsUUID,
  Length,
  Matches,
  Max,
  Min,
} from 'class-validator';
import { IsOmittable, PageMeta, PageQuery, QuotaFieldsDto } from '@app/tenancy';
import type { ApiKey } from '../api-key.entity';
import type { KeyListSort, KeyListStatus } from '../api-keys.repository';
import type { QuotaPeriod } from '../key-principal';
import { KEY_SCOPES, scopesOf } from '../scopes';

const MODEL = /^[\w.:/@-]{1,100}$/;

/** `permissions` on create, patch and the generate alias: endpoint scopes only (scopes.ts). */
const Permissions = () =>
  applyDecorators(
    ApiPropertyOptional({
      example: ['chat', 'embeddings'],
      type: [String],
      enum: KEY_SCOPES,
      description:
        'Endpoint scopes the key may call: chat, embeddings, responses, messages, models. Empty (default) = every endpoint.',
    }),
    IsOptional(),
    IsArray(),
    ArrayMaxSize(KEY_SCOPES.length),
    IsIn(KEY_SCOPES, {
      each: true,
      message: `each permission must be an endpoint scope: one of ${KEY_SCOPES.join(', ')}`,
    }),
  );

/** Limits an admin may set on a key (shared by create and update). */
export class KeyLimitsDto extends QuotaFieldsDto {
  @ApiPropertyOptional({
    example: 60,
    nullable: true,
    type: Number,
    description: 'Requests per minute (null = unlimited)',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  rate_limit_rpm?: number | null;

  @ApiPropertyOptional({
    example: ['gpt-4o-mini'],
    nullable: true,
    type: [String],
    description: 'Models this key may call (null = all)',
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Matches(MODEL, {
    each: true,
    message: 'each model name must be 1-100 characters of letters, digits and ._:/@-',
  })
  allowed_models?: string[] | null;

  @ApiPropertyOptional({
    example: '2030-01-01T00:00:00Z',
    nullable: true,
    type: String,
    format: 'date-time',
    description: 'After this the key is refused',
  })
  @IsOptional()
  @IsDateString({ strict: true })
  expires_at?: string | null;

  @Permissions()
  permissions?: string[];
}

export class CreateApiKeyDto extends KeyLimitsDto {
  @ApiProperty({ example: 'Production API' })
  @IsString()
  @Length(1, 100)
  name: string;

  @ApiPropertyOptional({
    format: 'uuid',
    description:
      'Owner (admins only; members create keys for themselves; default: the caller, or the tenant system user for the master key)',
  })
  @IsOptional()
  @IsUUID()
  user_id?: string;

  @ApiPropertyOptional({
    description:
      'Import an existing key (migration from another system) instead of generating one; 20-200 printable characters',
  })
  @IsOptional()
  @IsString()
  @Matches(/^[\x21-\x7e]{20,200}$/, {
    message: 'key must be 20-200 printable ASCII characters without spaces',
  })
  key?: string;
}

export class UpdateApiKeyDto extends KeyLimitsDto {
  @ApiPropertyOptional({ example: 'Renamed key' })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  name?: string;
}

export class RegenerateApiKeyDto {
  @ApiPropertyOptional({
    example: 3600,
    default: 0,
    description: 'Seconds during which the old key keeps working (max 30 days)',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(30 * 86400)
  grace_period_seconds?: number;
}

/** The backfill-tool document's `POST /auth/key/generate` body. */
export class GenerateKeyDto {
  @ApiProperty({ example: 'Production API Key' })
  @IsString()
  @Length(1, 100)
  name: string;

  @ApiPropertyOptional({ example: 100.0 })
  @IsOptional()
  @IsNumber({ maxDecimalPlaces: 6, allowNaN: false, allowInfinity: false })
  @Min(0)
  @Max(1e8)
  max_budget?: number;

  @ApiPropertyOptional({ example: 60 })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  rate_limit_rpm?: number;

  @ApiPropertyOptional({ example: 100000, description: 'Tokens per minute (sliding 60 s window)' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(2_000_000_000)
  rate_limit_tpm?: number;

  @ApiPropertyOptional({ example: ['claude-sonnet-4-5-20250929'], type: [String] })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Matches(MODEL, {
    each: true,
    message: 'each model name must be 1-100 characters of letters, digits and ._:/@-',
  })
  allowed_models?: string[];

  @Permissions()
  permissions?: string[];
}

export const KEY_LIST_STATUSES: KeyListStatus[] = [
  'all',
  'current',
  'active',
  'exhausted',
  'expired',
  'revoked',
];
export const KEY_LIST_SORTS: KeyListSort[] = ['created', 'name', 'usage', 'spend', 'last_used'];

/** GET /api/v1/api-keys: one page, searched and filtered in PostgreSQL. */
export class KeyListQuery extends PageQuery {
  @ApiPropertyOptional({
    example: 'billing',
    description:
      "Part of the key's name or of its owner's email (case-insensitive), or the start of its prefix (sk-...)",
  })
  @IsOptional()
  @IsString()
  @Length(1, 100)
  // PostgreSQL refuses a NUL in text (a 500, not a 400): control characters are refused here.
  // eslint-disable-next-line no-control-regex -- the point is to match them
  @Matches(/^[^\x00-\x1f\x7f]*$/, { message: 'q must not hold control characters' })
  q?: string;

  @ApiPropertyOptional({
    enum: KEY_LIST_STATUSES,
    default: 'all',
    description:
      'current: not revoked; active: not revoked nor expired; exhausted: refused now by the key itself (expired, or its quota or budget used up this period); expired; revoked; all',
  })
  @IsOptional()
  @IsIn(KEY_LIST_STATUSES)
  status?: KeyListStatus;

  @ApiPropertyOptional({ format: 'uuid', description: "Only this owner's keys (admins)" })
  @IsOptional()
  @IsUUID()
  owner_id?: string;

  @ApiPropertyOptional({
    enum: KEY_LIST_SORTS,
    default: 'created',
    description: 'usage and spend: running totals since the key was created',
  })
  @IsOptional()
  @IsIn(KEY_LIST_SORTS)
  sort?: KeyListSort;

  @ApiPropertyOptional({ enum: ['asc', 'desc'], default: 'desc' })
  @IsOptional()
  @IsIn(['asc', 'desc'])
  order?: 'asc' | 'desc';
}

export type KeyStatus = 'active' | 'revoked' | 'expired';
export type Exhaustion = 'expired' | 'quota' | 'budget';

export class KeyPeriodUsage {
  @ApiProperty({ description: 'Tokens used in the current period (ledger; for period none, since creation)' })
  tokens: number;
  @ApiProperty({ description: 'USD spent in the current period' }) spend: number;
  @ApiProperty({ nullable: true, type: String, description: 'When the period resets (null: never)' })
  resets_at: string | null;
}

export class ApiKeyResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty({ format: 'uuid' }) tenant_id: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) user_id: string | null;
  @ApiProperty() name: string;
  @ApiProperty({ example: 'sk-AbC123xYz9', description: 'First 12 characters, for display' })
  key_prefix: string;
  @ApiProperty({ enum: ['active', 'revoked', 'expired'] }) status: KeyStatus;
  @ApiProperty({ description: 'A legacy key still waiting for its lookup hash (upgrades on first use)' })
  legacy: boolean;
  @ApiProperty({ nullable: true, type: Number }) quota_limit: number | null;
  @ApiProperty() current_quota_usage: number;
  @ApiProperty({ nullable: true, type: Number }) max_budget: number | null;
  @ApiProperty() spend: number;
  @ApiProperty({ enum: ['none', 'daily', 'monthly'] }) quota_period: QuotaPeriod;
  @ApiProperty({ nullable: true, type: Number }) rate_limit_rpm: number | null;
  @ApiProperty({
    type: Number,
    nullable: true,
    description: 'Tokens per minute (sliding 60 s window); null = unlimited',
  })
  rate_limit_tpm: number | null;
  @ApiProperty({ nullable: true, type: [String] }) allowed_models: string[] | null;
  @ApiProperty({ type: [String], description: 'As stored (create/patch accept endpoint scopes only)' })
  permissions: string[];
  @ApiProperty({
    nullable: true,
    type: [String],
    enum: KEY_SCOPES,
    description: 'The endpoints this key may call (from permissions); null = every endpoint',
  })
  scopes: string[] | null;
  @ApiProperty({
    type: [String],
    description:
      'Stored permission names that are not endpoint scopes (legacy or imported keys): kept, but they restrict nothing',
  })
  ignored_permissions: string[];
  @ApiProperty({ nullable: true, type: String }) expires_at: string | null;
  @ApiProperty({ nullable: true, type: String }) revoked_at: string | null;
  @ApiProperty({ nullable: true, type: String }) last_used_at: string | null;
  @ApiProperty({
    nullable: true,
    type: String,
    description: 'Until when the previous key (regenerated) still works',
  })
  previous_key_valid_until: string | null;
  @ApiProperty() created_at: string;
  @ApiProperty() updated_at: string;
  @ApiPropertyOptional({
    type: KeyPeriodUsage,
    description: 'In list answers: the current period, from the ledger',
  })
  period?: KeyPeriodUsage;
  @ApiPropertyOptional({
    type: [String],
    enum: ['expired', 'quota', 'budget'],
    description:
      'In list answers: why the key itself refuses requests now (empty: it does not). The user and tenant limits apply too.',
  })
  exhausted?: Exhaustion[];

  static from(k: ApiKey, now = Date.now(), minCompletionTokens = 1): ApiKeyResponse {
    const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
    const status: KeyStatus = k.revokedAt
      ? 'revoked'
      : k.expiresAt && new Date(k.expiresAt).getTime() <= now
        ? 'expired'
        : 'active';
    const perms = scopesOf(k.permissions);
    const grace =
      k.previousExpiresAt && new Date(k.previousExpiresAt).getTime() > now ? k.previousExpiresAt : null;
    return {
      id: k.id,
      tenant_id: k.tenantId,
      user_id: k.userId,
      name: k.name,
      key_prefix: k.keyPrefix,
      status,
      legacy: !!k.legacy,
      quota_limit: k.quotaLimit,
      current_quota_usage: k.currentQuotaUsage,
      max_budget: k.maxBudget,
      spend: k.spend,
      quota_period: k.quotaPeriod,
      rate_limit_rpm: k.rateLimitRpm,
      rate_limit_tpm: k.rateLimitTpm ?? null,
      allowed_models: k.allowedModels,
      permissions: k.permissions ?? [],
      scopes: perms.scopes,
      ignored_permissions: perms.ignored,
      expires_at: iso(k.expiresAt),
      revoked_at: iso(k.revokedAt),
      last_used_at: iso(k.lastUsedAt),
      previous_key_valid_until: iso(grace),
      created_at: iso(k.createdAt)!,
      updated_at: iso(k.updatedAt)!,
      ...(k.period && {
        period: { tokens: k.period.tokens, spend: k.period.spend, resets_at: iso(k.period.resetsAt) },
        exhausted: status === 'revoked' ? [] : exhaustion(k, status, minCompletionTokens),
      }),
    };
  }
}

/** The same test as the list's `status=exhausted` filter (ApiKeysRepository), on one key. */
function exhaustion(k: ApiKey, status: KeyStatus, minCompletionTokens: number): Exhaustion[] {
  const out: Exhaustion[] = [];
  if (status === 'expired') out.push('expired');
  if (k.quotaLimit !== null && k.period && k.quotaLimit - k.period.tokens < minCompletionTokens)
    out.push('quota');
  if (k.maxBudget !== null && k.period && k.period.spend >= k.maxBudget) out.push('budget');
  return out;
}

/** Create and regenerate only: the one response that carries the key. */
export class ApiKeyCreatedResponse extends ApiKeyResponse {
  @ApiProperty({ example: 'sk-...', description: 'The full key. Shown once: store it now.' }) key: string;
}

export class ApiKeyPage extends PageMeta {
  @ApiProperty({ type: [ApiKeyResponse] }) data: ApiKeyResponse[];
}

export class KeyInfoResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() name: string;
  @ApiProperty() key_prefix: string;
  @ApiProperty({ format: 'uuid' }) tenant_id: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) user_id: string | null;
  @ApiProperty({ nullable: true, type: Number }) quota_limit: number | null;
  @ApiProperty() current_quota_usage: number;
  @ApiProperty({ nullable: true, type: Number }) max_budget: number | null;
  @ApiProperty() spend: number;
  @ApiProperty({ enum: ['none', 'daily', 'monthly'] }) quota_period: QuotaPeriod;
  @ApiProperty({ nullable: true, type: Number }) rate_limit_rpm: number | null;
  @ApiProperty({
    type: Number,
    nullable: true,
    description: 'Tokens per minute (sliding 60 s window); null = unlimited',
  })
  rate_limit_tpm: number | null;
  @ApiProperty({ nullable: true, type: [String] }) allowed_models: string[] | null;
  @ApiProperty({
    nullable: true,
    type: [String],
    enum: KEY_SCOPES,
    description: 'The endpoints this key may call; null = every endpoint',
  })
  scopes: string[] | null;
  @ApiProperty({ nullable: true, type: String }) expires_at: string | null;
}
