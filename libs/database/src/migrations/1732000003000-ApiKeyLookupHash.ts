import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Step (c), the backfill-tool document: `key_lookup_hash` = hex sha256 of the key, unique,
 * so authentication is one index lookup. Existing rows stay NULL: they authenticate
 * through the bcrypt fallback once and are upgraded then (the key is known in plaintext
 * at that moment). `key_hash` stays so a rollback to step (b) still verifies keys.
 */
export class ApiKeyLookupHash1732000003000 implements MigrationInterface {
  name = 'ApiKeyLookupHash1732000003000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE api_keys ADD COLUMN key_lookup_hash char(64)`);
    await q.query(`CREATE UNIQUE INDEX api_keys_key_lookup_hash_key ON api_keys (key_lookup_hash)`);
    // The fallback and the backfill report look only at rows still waiting.
    await q.query(
      `CREATE INDEX api_keys_legacy_prefix_idx ON api_keys (key_prefix) WHERE key_lookup_hash IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX api_keys_legacy_prefix_idx`);
    await q.query(`DROP INDEX api_keys_key_lookup_hash_key`);
    await q.query(`ALTER TABLE api_keys DROP COLUMN key_lookup_hash`);
  }
}
