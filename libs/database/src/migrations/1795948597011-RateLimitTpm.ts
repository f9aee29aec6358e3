import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Tokens-per-minute limits (issue 17): per key, and optionally per user and tenant (all their
 * keys together). A sliding window of 60 s counted in the quota store with the reservation at
 * admission and corrected at settle; null = unlimited.
 */
export class RateLimitTpm1795948597011 implements MigrationInterface {
  name = 'RateLimitTpm1795948597011';

  async up(q: QueryRunner): Promise<void> {
    for (const table of ['tenants', 'users', 'api_keys'])
      await q.query(`
        ALTER TABLE ${table}
          ADD COLUMN rate_limit_tpm integer,
          ADD CONSTRAINT ${table}_rate_limit_tpm_check CHECK (rate_limit_tpm IS NULL OR rate_limit_tpm > 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['api_keys', 'users', 'tenants'])
      await q.query(`
        ALTER TABLE ${table}
          DROP CONSTRAINT ${table}_rate_limit_tpm_check,
          DROP COLUMN rate_limit_tpm`);
  }
}
