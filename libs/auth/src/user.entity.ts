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
import { numericColumn, Tenant, type Role } from '@app/tenancy';

export type UserStatus = 'active' | 'disabled';

/** A user's defaults for new keys (null or absent field = unlimited / no expiry). */
export interface KeyDefaults {
  quota_limit?: number | null;
  max_budget?: number | null;
  quota_period?: 'none' | 'daily' | 'monthly';
  rate_limit_rpm?: number | null;
  rate_limit_tpm?: number | null;
  allowed_models?: string[] | null;
  /** New keys expire this many days after creation. */
  expires_in_days?: number | null;
}

/** Declares exactly what the migrations build (README "Migrations"). */
@Entity('users')
// Expression index (tenant_id, lower(email)): emails are unique per tenant. Named, never synchronized.
@Index('users_tenant_email_key', { synchronize: false })
@Check('users_role_check', `role IN ('admin', 'member', 'system')`)
@Check('users_status_check', `status IN ('active', 'disabled')`)
@Check('users_quota_limit_check', `quota_limit IS NULL OR quota_limit >= 0`)
@Check('users_max_budget_check', `max_budget IS NULL OR max_budget >= 0`)
@Check('users_quota_period_check', `quota_period IN ('none', 'daily', 'monthly')`)
@Check('users_rate_limit_tpm_check', `rate_limit_tpm IS NULL OR rate_limit_tpm > 0`)
export class User {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'users_pkey' })
  id: string;

  @Index('users_tenant_id_idx')
  @ForeignKey(() => Tenant, { name: 'users_tenant_id_fkey', onDelete: 'CASCADE' })
  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId: string;

  @Column({ type: 'varchar', length: 254 })
  email: string;

  @Column({ type: 'varchar', length: 100, nullable: true })
  name: string | null;

  /** bcrypt; null for the tenant's system user, which cannot log in. */
  @Column({ name: 'password_hash', type: 'varchar', length: 100, nullable: true, select: false })
  passwordHash: string | null;

  @Column({ type: 'varchar', length: 16 })
  role: Role;

  @Column({ type: 'varchar', length: 16, default: 'active' })
  status: UserStatus;

  /** Token quota of the user (all their keys) per period; null = unlimited (quota lib). */
  @Column({ name: 'quota_limit', type: 'bigint', nullable: true, transformer: numericColumn })
  quotaLimit: number | null;

  /** USD budget per period; null = unlimited. */
  @Column({
    name: 'max_budget',
    type: 'numeric',
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: numericColumn,
  })
  maxBudget: number | null;

  @Column({ name: 'quota_period', type: 'varchar', length: 8, default: 'none' })
  quotaPeriod: 'none' | 'daily' | 'monthly';

  /** Tokens per minute (sliding 60 s window, all its keys together); null = unlimited. */
  @Column({ name: 'rate_limit_tpm', type: 'integer', nullable: true })
  rateLimitTpm: number | null;

  /**
   * Bumped by a password, role or status change and by "log out everywhere"; a JWT carries
   * the value it was issued with (`ver`) and is refused once they differ.
   */
  @Column({ name: 'token_version', type: 'integer', default: 0 })
  tokenVersion: number;

  /**
   * Limits for the user's new keys, set by an admin (README "Virtual API keys", who may do what): applied where a create
   * names none; a member may only ask for less. null = no defaults (unlimited).
   */
  @Column({ name: 'key_defaults', type: 'jsonb', nullable: true })
  keyDefaults: KeyDefaults | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
