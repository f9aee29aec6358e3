import { Check, Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

export const AUDIT_ACTOR_TYPES = ['master', 'user', 'anonymous', 'cli', 'system'] as const;
export type AuditActorType = (typeof AUDIT_ACTOR_TYPES)[number];

/** One audit_log row (migration 1795936489416-AuditLog: no foreign keys, append-only trigger). */
@Entity('audit_log')
@Index('IDX_audit_log_tenant', ['tenantId', 'id'])
@Index('IDX_audit_log_target', ['targetId', 'id'], { where: '"target_id" IS NOT NULL' })
@Check('CHK_audit_log_actor_type', `"actor_type" IN ('master', 'user', 'anonymous', 'cli', 'system')`)
export class AuditEntry {
  /** bigint: read as a string (exact beyond 2^53). */
  @PrimaryGeneratedColumn('identity', {
    type: 'bigint',
    generatedIdentity: 'ALWAYS',
    primaryKeyConstraintName: 'PK_audit_log',
  })
  id: string;

  /** The tenant acted in (null: a failed login with an unknown email). */
  @Column({ name: 'tenant_id', type: 'uuid', nullable: true })
  tenantId: string | null;

  @Column({ name: 'actor_type', type: 'varchar', length: 16 })
  actorType: AuditActorType;

  /** The acting user (actor_type `user`, or the user who logged in). */
  @Column({ name: 'actor_id', type: 'uuid', nullable: true })
  actorId: string | null;

  /** Readable actor: the user's email, `master key`, the CLI's OS user, the email a failed login tried. */
  @Column({ name: 'actor_label', type: 'varchar', length: 320, nullable: true })
  actorLabel: string | null;

  /** `tenant.create`, `api_key.update`, `auth.login_failed`, ... (README "Audit log"). */
  @Column({ type: 'varchar', length: 64 })
  action: string;

  @Column({ name: 'target_type', type: 'varchar', length: 32 })
  targetType: string;

  @Column({ name: 'target_id', type: 'uuid', nullable: true })
  targetId: string | null;

  /** Readable target, as it was then: the key's name, the user's email, the tenant's name. */
  @Column({ name: 'target_label', type: 'varchar', length: 320, nullable: true })
  targetLabel: string | null;

  /** The changed fields before and after (never a hash, a password or key material). */
  @Column({ type: 'jsonb', nullable: true })
  before: Record<string, unknown> | null;

  @Column({ type: 'jsonb', nullable: true })
  after: Record<string, unknown> | null;

  @Column({ name: 'request_id', type: 'varchar', length: 128, nullable: true })
  requestId: string | null;

  @Column({ type: 'varchar', length: 64, nullable: true })
  ip: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
