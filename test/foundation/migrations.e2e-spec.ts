import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { loadConfig } from '@app/config';
import { dataSourceOptions, MIGRATIONS } from '@app/database';
import { dbUrl, withClient } from '../harness/servers';

async function schema(ds: DataSource): Promise<string> {
  const rows: { t: string }[] = await ds.query(`
    SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable || ':' || coalesce(column_default, '') AS t
      FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'migrations'
     UNION ALL
    SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'migrations'
     ORDER BY 1`);
  return rows.map((r) => r.t).join('\n');
}

describe('migrations on a real PostgreSQL', () => {
  it('run, revert every step, run again: clean, and the same schema', async () => {
    const admin = process.env.TEST_PG_ADMIN_URL!;
    const name = `mig_${randomBytes(4).toString('hex')}`;
    await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
    const config = loadConfig({
      DATA_DIR: '/tmp/gw-test-config',
      MASTER_KEY: 'x'.repeat(32),
      JWT_SECRET: 'y'.repeat(40),
      MIGRATIONS_RUN: 'false',
    });
    const ds = new DataSource(dataSourceOptions(config, dbUrl(admin, name)));
    await ds.initialize();
    try {
      const ran = await ds.runMigrations({ transaction: 'each' });
      expect(ran).toHaveLength(MIGRATIONS.length);
      const first = await schema(ds);
      expect(first).toContain('api_keys.key_lookup_hash');
      expect(first).toContain('usage_records');

      for (let i = 0; i < MIGRATIONS.length; i++) await ds.undoLastMigration({ transaction: 'each' });
      expect(await schema(ds)).toBe('');
      expect(await ds.query(`SELECT count(*)::int AS n FROM migrations`)).toEqual([{ n: 0 }]);

      await ds.runMigrations({ transaction: 'each' });
      expect(await schema(ds)).toBe(first);
      expect(await ds.showMigrations()).toBe(false);
    } finally {
      await ds.destroy();
    }
  });
});
