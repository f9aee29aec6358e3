import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type TenantStatus = 'active' | 'disabled';

/** bigint / numeric columns arrive as strings from pg; limits fit a JS number exactly. */
const nullableNumber = {
  to: (v: number | null | undefined) => v,
  from: (v: string | null) => (v === null ? null : Number(v)),
};

@Entity('tenants')
export class Tenant {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ type: 'varchar', length: 100 })
  name: string;

  @Column({ type: 'varchar', length: 16, default: 'active' })
  status: TenantStatus;

  /** Token quota of the whole tenant per period; null = unlimited (quota lib). */
  @Column({ name: 'quota_limit', type: 'bigint', nullable: true, transformer: nullableNumber })
  quotaLimit: number | null;

  /** USD budget per period; null = unlimited. */
  @Column({
    name: 'max_budget',
    type: 'numeric',
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: nullableNumber,
  })
  maxBudget: number | null;

  @Column({ name: 'quota_period', type: 'varchar', length: 8, default: 'none' })
  quotaPeriod: 'none' | 'daily' | 'monthly';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
