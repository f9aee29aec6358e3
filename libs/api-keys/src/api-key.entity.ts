import {
  Check,
  Column,
  CreateDateColumn,
  Entity,
  ForeignKey,
  Index,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
} from 'typeorm';
import { User } from '@app/auth';
import { numericColumn, Tenant } from '@app/tenancy';
import type { QuotaPeriod } from './key-principal';

/** Declares exactly what the migrations build (README "Migrations"). */
@Entity('api_keys')
// The legacy (bcrypt) fallback and the backfill report look only at rows still waiting.
@Index('api_keys_legacy_prefix_idx', ['keyPrefix'], { where: '(key_lookup_hash IS NULL)' })
@Check('api_keys_quota_limit_check', `quota_limit IS NULL OR quota_limit >= 0`)
@Check('api_keys_max_budget_check', `max_budget IS NULL OR max_budget >= 0`)
@Check('api_keys_quota_period_check', `quota_period IN ('none', 'daily', 'monthly')`)
@Check('api_keys_rate_limit_rpm_check', `rate_limit_rpm IS NULL OR rate_limit_rpm > 0`)
@Check('api_keys_rate_limit_tpm_check', `rate_limit_tpm IS NULL OR rate_limit_tpm > 0`)
export class ApiKey {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'api_keys_pkey' })
  id: string;

  @Index('api_keys_tenant_id_idx')
  @ForeignKey(() => Tenant, { name: 'api_keys_tenant_id_fkey', onDelete: 'CASCADE' })
  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId: string;

  /** Null for legacy keys until `keys:assign-owner`. */
  @Index('api_keys_user_id_idx')
  @ForeignKey(() => User, { name: 'api_keys_user_id_fkey', onDelete: 'CASCADE' })
  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  /** bcrypt of the key: kept so a rollback to the pre-lookup-hash schema still verifies keys. */
  @Column({ name: 'key_hash', type: 'varchar', length: 100, select: false })
  keyHash: string;

  @Index('api_keys_key_prefix_idx')
  @Column({ name: 'key_prefix', type: 'varchar', length: 12 })
  keyPrefix: string;

  /** hex sha256; null = legacy key waiting for its first use. Authentication is one lookup on it. */
  @Index('api_keys_key_lookup_hash_key', { unique: true })
  @Column({ name: 'key_lookup_hash', type: 'char', length: 64, nullable: true, select: false })
  keyLookupHash: string | null;

  @Index('api_keys_previous_lookup_hash_key', { unique: true })
  @Column({ name: 'previous_lookup_hash', type: 'char', length: 64, nullable: true, select: false })
  previousLookupHash: string | null;

  @Column({ name: 'previous_expires_at', type: 'timestamptz', nullable: true })
  previousExpiresAt: Date | null;

  @Column({ type: 'jsonb', default: [] })
  permissions: string[];

  @Column({ name: 'quota_limit', type: 'bigint', nullable: true, transformer: numericColumn })
  quotaLimit: number | null;

  @Column({ name: 'current_quota_usage', type: 'bigint', default: 0, transformer: numericColumn })
  currentQuotaUsage: number;

  @Column({
    name: 'max_budget',
    type: 'numeric',
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: numericColumn,
  })
  maxBudget: number | null;

  @Column({ type: 'numeric', precision: 14, scale: 6, default: 0, transformer: numericColumn })
  spend: number;

  @Column({ name: 'quota_period', type: 'varchar', length: 8, default: 'none' })
  quotaPeriod: QuotaPeriod;

  /** Tokens per minute (sliding 60 s window); null = unlimited. */
  @Column({ name: 'rate_limit_tpm', type: 'integer', nullable: true })
  rateLimitTpm: number | null;

  @Column({ name: 'rate_limit_rpm', type: 'integer', nullable: true })
  rateLimitRpm: number | null;

  @Column({ name: 'allowed_models', type: 'text', array: true, nullable: true })
  allowedModels: string[] | null;

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt: Date | null;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt: Date | null;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  /** Not a column: set by repository queries that select `key_lookup_hash IS NULL`. */
  legacy?: boolean;
}
