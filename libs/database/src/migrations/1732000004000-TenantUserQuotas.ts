import { MigrationInterface, QueryRunner } from 'typeorm';

/** Token quota, USD budget and reset period at the tenant and user levels (keys have theirs since step (b)). */
export class TenantUserQuotas1732000004000 implements MigrationInterface {
  name = 'TenantUserQuotas1732000004000';

  async up(q: QueryRunner): Promise<void> {
    for (const table of ['tenants', 'users']) {
      await q.query(`
        ALTER TABLE ${table}
          ADD COLUMN quota_limit bigint CHECK (quota_limit IS NULL OR quota_limit >= 0),
          ADD COLUMN max_budget numeric(14, 6) CHECK (max_budget IS NULL OR max_budget >= 0),
          ADD COLUMN quota_period varchar(8) NOT NULL DEFAULT 'none' CHECK (quota_period IN ('none', 'daily', 'monthly'))`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['users', 'tenants']) {
      await q.query(
        `ALTER TABLE ${table} DROP COLUMN quota_limit, DROP COLUMN max_budget, DROP COLUMN quota_period`,
      );
    }
  }
}
