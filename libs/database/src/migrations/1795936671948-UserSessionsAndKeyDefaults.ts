import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * users.token_version: bumped by a password, role or status change and by "log out
 * everywhere"; a JWT whose `ver` differs is refused. users.key_defaults: an admin's limits
 * for the user's new keys (a member may only ask for less). Emails become unique per tenant
 * (they were unique across tenants, so creating a user told an admin whether an email existed
 * in another tenant); login takes an optional tenant for an email used in several.
 * `down` restores the global index, and so fails while an email is used in two tenants.
 */
export class UserSessionsAndKeyDefaults1795936671948 implements MigrationInterface {
  name = 'UserSessionsAndKeyDefaults1795936671948';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0, ADD COLUMN key_defaults jsonb`,
    );
    await q.query(`DROP INDEX users_email_key`);
    await q.query(`CREATE UNIQUE INDEX users_tenant_email_key ON users (tenant_id, lower(email))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX users_tenant_email_key`);
    await q.query(`CREATE UNIQUE INDEX users_email_key ON users (lower(email))`);
    await q.query(`ALTER TABLE users DROP COLUMN key_defaults, DROP COLUMN token_version`);
  }
}
