import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { loadConfig } from '@app/config';
import { dataSourceOptions, entityGlob } from '@app/database';
import { dbUrl, withClient } from '../harness/servers';

/**
 * The catalog of the public schema, one line per column, constraint and index, in
 * PostgreSQL's own normalized spelling (format_type, pg_get_constraintdef, pg_get_indexdef).
 */
async function catalog(ds: DataSource, skipIndexes: string[]): Promise<string[]> {
  const rows: { line: string }[] = await ds.query(
    `SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
            || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'migrations'
     UNION ALL
     SELECT c.relname || ' CONSTRAINT ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
      WHERE c.relname <> 'migrations'
     UNION ALL
     SELECT 'INDEX ' || indexdef FROM pg_indexes
      WHERE schemaname = 'public' AND tablename <> 'migrations' AND NOT indexname = ANY($1)
        AND indexname NOT IN (SELECT conname FROM pg_constraint)
     ORDER BY 1`,
    [skipIndexes],
  );
  // TypeORM writes a numeric default as a quoted literal ('0'::numeric), a migration as 0: same value.
  return rows.map((r) => r.line.replace(/ DEFAULT '(-?[0-9.]+)'::(numeric|bigint|integer)$/, ' DEFAULT $1'));
}

/**
 * The entities declare exactly the schema the hand-written migrations build: TypeORM's
 * schema diff (what `migration:generate` writes into a new migration) on a database
 * migrated to head must be empty. README "Migrations".
 */
describe('schema drift: entities vs migrations', () => {
  const config = loadConfig({
    DATA_DIR: '/tmp/gw-test-config',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    MIGRATIONS_RUN: 'false',
  });
  let ds: DataSource;

  /** A new empty database, with the same options and entity glob as ormconfig.ts (the CLI). */
  async function freshDatabase(): Promise<DataSource> {
    const admin = process.env.TEST_PG_ADMIN_URL!;
    const name = `drift_${randomBytes(4).toString('hex')}`;
    await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
    const entities = [entityGlob(join(__dirname, '../..'))];
    return new DataSource(dataSourceOptions(config, dbUrl(admin, name), entities)).initialize();
  }

  beforeAll(async () => {
    ds = await freshDatabase();
    await ds.runMigrations({ transaction: 'each' });
  });

  afterAll(() => ds?.destroy());

  it('migration:generate on a database migrated to head finds nothing', async () => {
    // SchemaBuilder.log() is what `migration:generate` (and `--check`) calls.
    const sql = await ds.driver.createSchemaBuilder().log();
    const statements = sql.upQueries.map((q) => `${q.query};`);
    if (statements.length > 0) {
      throw new Error(
        `The entities do not declare the schema the migrations build: migration:generate would write\n` +
          `  ${statements.join('\n  ')}\n` +
          `Declare it in the entity (README "Migrations"), or write the migration that changes the schema.`,
      );
    }
  });

  it('every table the migrations create has an entity', async () => {
    const rows: { table_name: string }[] = await ds.query(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'migrations'
        ORDER BY 1`,
    );
    const tables = rows.map((r) => r.table_name);
    const withEntity = new Set(ds.entityMetadatas.map((m) => m.tableName));
    expect(tables.filter((t) => !withEntity.has(t))).toEqual([]);
    expect(tables.length).toBeGreaterThan(0);
  });

  // TypeORM's diff matches indexes, checks and foreign keys by name and ignores index WHERE
  // clauses, column order in an index and check expressions. Building the schema from the
  // entities alone (synchronize) and comparing PostgreSQL's normalized catalog catches those.
  it('a database built from the entities alone has the same catalog as the migrated one', async () => {
    const synced = await freshDatabase();
    try {
      await synced.synchronize();
      // Expression indexes (lower(email)) cannot be declared: entities name them with
      // synchronize: false, and they must exist in the migrated database.
      const unsynced = ds.entityMetadatas.flatMap((m) =>
        m.indices.filter((i) => i.synchronize === false).map((i) => i.name),
      );
      const present: { indexname: string }[] = await ds.query(
        `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname = ANY($1)`,
        [unsynced],
      );
      expect(present.map((r) => r.indexname).sort()).toEqual([...unsynced].sort());
      expect(await catalog(synced, unsynced)).toEqual(await catalog(ds, unsynced));
    } finally {
      await synced.destroy();
    }
  });
});
