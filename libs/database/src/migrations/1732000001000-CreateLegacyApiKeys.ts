import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Step (a) of the seeds' story: API keys as the legacy system stored them, a bcrypt hash
 * and a display prefix only (../shared/seeds/004: "we only store key_hash and key_prefix").
 * Authenticating such a key means bcrypt-comparing against candidate rows.
 */
export class CreateLegacyApiKeys1732000001000 implements MigrationInterface {
  name = 'CreateLegacyApiKeys1732000001000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name varchar(100) NOT NULL,
        key_hash varchar(100) NOT NULL,
        key_prefix varchar(12) NOT NULL,
        permissions jsonb NOT NULL DEFAULT '[]'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX api_keys_tenant_id_idx ON api_keys (tenant_id)`);
    await q.query(`CREATE INDEX api_keys_key_prefix_idx ON api_keys (key_prefix)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE api_keys`);
  }
}
