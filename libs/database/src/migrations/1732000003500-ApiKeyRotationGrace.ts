import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Regeneration with a grace period: the key keeps its id (usage, limits and counters stay
 * continuous) and the previous key's lookup hash stays valid until previous_expires_at.
 */
export class ApiKeyRotationGrace1732000003500 implements MigrationInterface {
  name = 'ApiKeyRotationGrace1732000003500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE api_keys ADD COLUMN previous_lookup_hash char(64), ADD COLUMN previous_expires_at timestamptz`,
    );
    await q.query(`CREATE UNIQUE INDEX api_keys_previous_lookup_hash_key ON api_keys (previous_lookup_hash)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX api_keys_previous_lookup_hash_key`);
    await q.query(`ALTER TABLE api_keys DROP COLUMN previous_lookup_hash, DROP COLUMN previous_expires_at`);
  }
}
