import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Step (b), the migration guide (../shared/seeds/000): keys get an owner (nullable for
 * legacy rows until `keys:assign-owner`) and quota fields; plus budget, rate limit,
 * allowed models (the backfill-tool document's key fields) and lifecycle timestamps.
 * Money is numeric USD; token counts are bigint.
 */
export class ApiKeyOwnersAndLimits1732000002000 implements MigrationInterface {
  name = 'ApiKeyOwnersAndLimits1732000002000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE api_keys
        ADD COLUMN user_id uuid REFERENCES users(id) ON DELETE CASCADE,
        ADD COLUMN quota_limit bigint CHECK (quota_limit IS NULL OR quota_limit >= 0),
        ADD COLUMN current_quota_usage bigint NOT NULL DEFAULT 0,
        ADD COLUMN max_budget numeric(14, 6) CHECK (max_budget IS NULL OR max_budget >= 0),
        ADD COLUMN spend numeric(14, 6) NOT NULL DEFAULT 0,
        ADD COLUMN quota_period varchar(8) NOT NULL DEFAULT 'none' CHECK (quota_period IN ('none', 'daily', 'monthly')),
        ADD COLUMN rate_limit_rpm integer CHECK (rate_limit_rpm IS NULL OR rate_limit_rpm > 0),
        ADD COLUMN allowed_models text[],
        ADD COLUMN expires_at timestamptz,
        ADD COLUMN revoked_at timestamptz,
        ADD COLUMN last_used_at timestamptz,
        ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()`);
    await q.query(`CREATE INDEX api_keys_user_id_idx ON api_keys (user_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX api_keys_user_id_idx`);
    await q.query(`
      ALTER TABLE api_keys
        DROP COLUMN user_id, DROP COLUMN quota_limit, DROP COLUMN current_quota_usage,
        DROP COLUMN max_budget, DROP COLUMN spend, DROP COLUMN quota_period,
        DROP COLUMN rate_limit_rpm, DROP COLUMN allowed_models, DROP COLUMN expires_at,
        DROP COLUMN revoked_at, DROP COLUMN last_used_at, DROP COLUMN updated_at`);
  }
}
