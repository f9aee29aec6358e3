import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { dataSourceOptions, entityGlob } from '@app/database';
import { catalog } from '../harness/catalog';
import { createEmptyDatabase, schemaTestConfig } from '../harness/servers';

/**
 * The entities declare exactly the schema the hand-written migrations build: TypeORM's
 * schema diff (what `migration:generate` writes into a new migration) on a database
 * migrated to head must be empty. README "Migrations".
 */
describe('schema drift: entities vs migrations', () => {
  const config = schemaTestConfig();
  let ds: DataSource;

  /** A new empty database, with the same options and entity glob as ormconfig.ts (the CLI). */
  async function freshDatabase(): Promise<DataSource> {
    const entities = [entityGlob(join(__dirname, '../..'))];
    return new DataSource(
      dataSourceOptions(config, await createEmptyDatabase('drift'), entities),
    ).initialize();
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
