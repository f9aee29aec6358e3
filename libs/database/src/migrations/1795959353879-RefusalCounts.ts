import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Refusals per tenant, local day (QUOTA_TIMEZONE) and reason (token quota, budget, rpm, tpm,
 * model not allowed, expired or revoked key, disabled owner), for the usage page. Counted in
 * memory where the gateway refuses and added here in batches (an upsert that adds), so any
 * number of instances write to the same row. Dropped with the tenant.
 */
export class RefusalCounts1795959353879 implements MigrationInterface {
  name = 'RefusalCounts1795959353879';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE refusal_counts (
        tenant_id uuid NOT NULL,
        day date NOT NULL,
        reason varchar(32) NOT NULL,
        count bigint NOT NULL,
        CONSTRAINT refusal_counts_pkey PRIMARY KEY (tenant_id, day, reason),
        CONSTRAINT refusal_counts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
        CONSTRAINT refusal_counts_count_check CHECK (count > 0)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE refusal_counts`);
  }
}
