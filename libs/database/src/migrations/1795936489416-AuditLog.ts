import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit trail (README "Audit log"): one row per admin mutation, login and password
 * change, written in the same transaction as the change it records.
 *
 * - `id` is an identity column: the API pages by it (newest first, `cursor` = last id seen).
 * - No foreign keys: an entry outlives the tenant, user or key it names (deleting a user
 *   must neither fail nor erase the record of who did what).
 * - Append-only: a trigger refuses UPDATE and DELETE, so no code path of the application can
 *   rewrite history. An operator purging old entries does it deliberately
 *   (`ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only`, or TRUNCATE).
 */
export class AuditLog1795936489416 implements MigrationInterface {
  name = 'AuditLog1795936489416';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY,
        tenant_id uuid,
        actor_type varchar(16) NOT NULL,
        actor_id uuid,
        actor_label varchar(320),
        action varchar(64) NOT NULL,
        target_type varchar(32) NOT NULL,
        target_id uuid,
        target_label varchar(320),
        before jsonb,
        after jsonb,
        request_id varchar(128),
        ip varchar(64),
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT "PK_audit_log" PRIMARY KEY (id),
        CONSTRAINT "CHK_audit_log_actor_type" CHECK (actor_type IN ('master', 'user', 'anonymous', 'cli', 'system'))
      )`);
    // The API reads newest first within a tenant (admins), or across tenants (master key).
    await q.query(`CREATE INDEX "IDX_audit_log_tenant" ON audit_log (tenant_id, id)`);
    // "What happened to this key / user / tenant?"
    await q.query(
      `CREATE INDEX "IDX_audit_log_target" ON audit_log (target_id, id) WHERE target_id IS NOT NULL`,
    );
    await q.query(`
      CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_log is append-only';
      END $$`);
    await q.query(`
      CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE audit_log`);
    await q.query(`DROP FUNCTION audit_log_append_only()`);
  }
}
