import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';
import { numericColumn } from '@app/tenancy';
import type { QuotaPeriod } from './key-principal';

@Entity('api_keys')
export class ApiKey {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId: string;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  /** bcrypt of the key: kept so a rollback to the pre-lookup-hash schema still verifies keys. */
  @Column({ name: 'key_hash', type: 'varchar', length: 100, select: false })
  keyHash: string;

  @Column({ name: 'key_prefix', type: 'varchar', length: 12 })
  keyPrefix: string;

  /** hex sha256; null = legacy key waiting for its first use. */
  @Column({ name: 'key_lookup_hash', type: 'char', length: 64, nullable: true, select: false })
  keyLookupHash: string | null;

  @Column({ name: 'previous_lookup_hash', type: 'char', length: 64, nullable: true, select: false })
  previousLookupHash: string | null;

  @Column({ name: 'previous_expires_at', type: 'timestamptz', nullable: true })
  previousExpiresAt: Date | null;

  @Column({ type: 'jsonb', default: () => `'[]'::jsonb` })
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
