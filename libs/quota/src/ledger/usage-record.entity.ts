import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { numericColumn } from '@app/tenancy';

/**
 * The usage_records table (the ledger), declared exactly as the migrations build it
 * (README "Migrations"). Rows are written by LedgerRepository's batch statement, not through
 * this entity. No foreign keys on purpose: billing history outlives deleted keys and users.
 */
@Entity('usage_records')
// The usage API and reconciliation always filter by tenant and time, then by key or user.
@Index('usage_records_tenant_created_idx', ['tenantId', 'createdAt'])
@Index('usage_records_key_created_idx', ['tenantId', 'apiKeyId', 'createdAt'])
@Index('usage_records_user_created_idx', ['tenantId', 'userId', 'createdAt'], {
  where: '(user_id IS NOT NULL)',
})
@Check('usage_records_prompt_tokens_check', `prompt_tokens >= 0`)
@Check('usage_records_completion_tokens_check', `completion_tokens >= 0`)
@Check('usage_records_cost_check', `cost >= 0`)
@Check('usage_records_attempts_check', `attempts >= 0`)
@Check('usage_records_cache_write_tokens_check', `cache_write_tokens >= 0`)
@Check('usage_records_cache_read_tokens_check', `cache_read_tokens >= 0`)
export class UsageRecord {
  /** Generated at settle time: a retried batch inserts each row once. */
  @PrimaryColumn({ type: 'uuid', primaryKeyConstraintName: 'usage_records_pkey' })
  id: string;

  @Column({ name: 'request_id', type: 'varchar', length: 128, nullable: true })
  requestId: string | null;

  @Column({ name: 'tenant_id', type: 'uuid' })
  tenantId: string;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ name: 'api_key_id', type: 'uuid' })
  apiKeyId: string;

  @Column({ type: 'varchar', length: 200 })
  model: string;

  @Column({ type: 'varchar', length: 64 })
  provider: string;

  @Column({ name: 'prompt_tokens', type: 'integer', default: 0 })
  promptTokens: number;

  @Column({ name: 'completion_tokens', type: 'integer', default: 0 })
  completionTokens: number;

  /** Of the prompt tokens: written to the provider's prompt cache. */
  @Column({ name: 'cache_write_tokens', type: 'integer', default: 0 })
  cacheWriteTokens: number;

  /** Of the prompt tokens: read from the provider's prompt cache. */
  @Column({ name: 'cache_read_tokens', type: 'integer', default: 0 })
  cacheReadTokens: number;

  /** USD. */
  @Column({ type: 'numeric', precision: 14, scale: 6, default: 0, transformer: numericColumn })
  cost: number;

  @Column({ type: 'varchar', length: 32 })
  status: string;

  @Column({ name: 'latency_ms', type: 'integer', nullable: true })
  latencyMs: number | null;

  /** When the request was admitted (same reset period as its counters). */
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' })
  createdAt: Date;

  /** The deployment that answered (or failed last), `<model>#<index>`; null before routing recorded it. */
  @Column({ type: 'varchar', length: 200, nullable: true })
  deployment: string | null;

  /** Upstream attempts of the request (retries and fallovers included; 0 = none was tried). */
  @Column({ type: 'integer', default: 1 })
  attempts: number;
}
