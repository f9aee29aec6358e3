import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The ledger names the deployment that answered (`<model>#<index>` in the routing table) and
 * counts the upstream attempts of the request (retries and fallovers included; one row, one
 * charge per client request whatever the attempts). Rows written before: deployment NULL,
 * attempts 1.
 */
export class UsageRecordsDeploymentAttempts1795939582416 implements MigrationInterface {
  name = 'UsageRecordsDeploymentAttempts1795939582416';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_records ADD COLUMN deployment varchar(200)`);
    await q.query(
      `ALTER TABLE usage_records ADD COLUMN attempts integer NOT NULL DEFAULT 1 CONSTRAINT usage_records_attempts_check CHECK (attempts >= 0)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_records DROP COLUMN attempts`);
    await q.query(`ALTER TABLE usage_records DROP COLUMN deployment`);
  }
}
