import {
  Check,
  Column,
  CreateDateColumn,
  Entity,
  Index,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
} from 'typeorm';

import { numericColumn } from './numeric-column';

export type TenantStatus = 'active' | 'disabled';

/**
 * Declares exactly what the migrations build (README "Migrations"; the schema drift test
 * fails on any difference). Names are PostgreSQL's defaults, as the migrations created them.
 */
@Entity('tenants')
// Expression index (lower(name)): TypeORM cannot declare one, so it is named and never synchronized.
@Index('tenants_name_key', { synchronize: false })
@Check('tenants_status_check', `status IN ('active', 'disabled')`)
@Check('tenants_quota_limit_check', `quota_limit IS NULL OR quota_limit >= 0`)
@Check('tenants_max_budget_check', `max_budget IS NULL OR max_budget >= 0`)
@Check('tenants_quota_period_check', `quota_period IN ('none', 'daily', 'monthly')`)
@Check('tenants_rate_limit_tpm_check', `rate_limit_tpm IS NULL OR rate_limit_tpm > 0`)
export class Tenant {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'tenants_pkey' })
  id: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  @Column({ type: 'varchar', length: 16, default: 'active' })
  status: TenantStatus;

  /** Token quota of the whole tenant per period; null = unlimited (quota lib). */
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

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
