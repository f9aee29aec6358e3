import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * users.token_version: bumped by a password, role or status change and by "log out
 * everywhere"; a JWT whose `ver` differs is refused. users.key_defaults: an admin's limits
 * for the user's new keys (a member may only ask for less).
 */
export class UserSessionsAndKeyDefaults1795936671948 implements MigrationInterface {
  name = 'UserSessionsAndKeyDefaults1795936671948';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0, ADD COLUMN key_defaults jsonb`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE users DROP COLUMN key_defaults, DROP COLUMN token_version`);
  }
}
