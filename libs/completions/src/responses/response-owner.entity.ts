import { Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { Tenant } from '@app/tenancy';

/** Who created a stored response (migration ResponseOwners): its tenant, key, model and deployment. */
@Entity('response_owners')
@Index('response_owners_tenant_created_idx', ['tenantId', 'createdAt'])
export class ResponseOwner {
  @PrimaryColumn({
    name: 'response_id',
    type: 'varchar',
    length: 128,
    primaryKeyConstraintName: 'response_owners_pkey',
  })
  responseId: string;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId: string;

  @ManyToOne(() => Tenant, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'tenant_id', foreignKeyConstraintName: 'response_owners_tenant_id_fkey' })
  tenant?: Tenant;

  @Column({ name: 'api_key_id', type: 'uuid' })
  apiKeyId: string;

  /** The model name the client called (its route serves later GET / DELETE / cancel). */
  @Column({ type: 'varchar', length: 200 })
  model: string;

  /** The deployment that made it (`<model>#<index>`): the one that stores it. */
  @Column({ type: 'varchar', length: 300 })
  deployment: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
