import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

import { numericColumn } from './numeric-column';

export type TenantStatus = 'active' | 'disabled';

@Entity('tenants')
export class Tenant {
  @PrimaryGeneratedColumn('uuid')
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

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
