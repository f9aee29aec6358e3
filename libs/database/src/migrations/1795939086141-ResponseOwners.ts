import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Who created each stored Responses API response: a response id is reachable (GET, DELETE,
 * cancel, previous_response_id) only with a key of this tenant, and is sent to the
 * deployment that made it. Rows go with their tenant.
 */
export class ResponseOwners1795939086141 implements MigrationInterface {
  name = 'ResponseOwners1795939086141';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE response_owners (
        response_id varchar(128) NOT NULL,
        tenant_id uuid NOT NULL,
        api_key_id uuid NOT NULL,
        model varchar(200) NOT NULL,
        deployment varchar(300) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT response_owners_pkey PRIMARY KEY (response_id),
        CONSTRAINT response_owners_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE
      )`);
    await q.query(
      `CREATE INDEX response_owners_tenant_created_idx ON response_owners (tenant_id, created_at)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE response_owners`);
  }
}
