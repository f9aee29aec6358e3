import { Check, Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { numericColumn, Tenant } from '@app/tenancy';

/**
 * The refusal_counts table (migration RefusalCounts), declared exactly as it is built:
 * refusals per tenant, local day (QUOTA_TIMEZONE) and reason. Rows are added to by
 * RefusalsRepository's upsert, not through this entity.
 */
@Entity('refusal_counts')
@Check('refusal_counts_count_check', `count > 0`)
export class RefusalCount {
  @PrimaryColumn({ name: 'tenant_id', type: 'uuid', primaryKeyConstraintName: 'refusal_counts_pkey' })
  tenantId: string;

  @ManyToOne(() => Tenant, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'tenant_id', foreignKeyConstraintName: 'refusal_counts_tenant_id_fkey' })
  tenant?: Tenant;

  /** The local day (QUOTA_TIMEZONE), YYYY-MM-DD. */
  @PrimaryColumn({ type: 'date', primaryKeyConstraintName: 'refusal_counts_pkey' })
  day: string;

  /** One of REFUSAL_REASONS (@app/observability). */
  @PrimaryColumn({ type: 'varchar', length: 32, primaryKeyConstraintName: 'refusal_counts_pkey' })
  reason: string;

  @Column({ type: 'bigint', transformer: numericColumn })
  count: number;
}
