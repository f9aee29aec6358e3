import { DataSource } from 'typeorm';
import { dataSourceOptions, MIGRATIONS } from '@app/database';
import { catalog } from '../harness/catalog';
import { createEmptyDatabase, schemaTestConfig } from '../harness/servers';

describe('migrations on a real PostgreSQL', () => {
  const config = schemaTestConfig();
  const freshDatabase = () => createEmptyDatabase('mig');

  it('run, revert every step, run again: clean, and the same schema', async () => {
    const ds = new DataSource(dataSourceOptions(config, await freshDatabase()));
    await ds.initialize();
    try {
      const ran = await ds.runMigrations({ transaction: 'each' });
      expect(ran).toHaveLength(MIGRATIONS.length);
      const first = await catalog(ds);
      expect(first).toContain('api_keys.key_lookup_hash character(64)');
      expect(first).toContain('usage_records CONSTRAINT usage_records_pkey PRIMARY KEY (id)');

      for (let i = 0; i < MIGRATIONS.length; i++) await ds.undoLastMigration({ transaction: 'each' });
      expect(await catalog(ds)).toEqual([]);
      expect(await ds.query(`SELECT count(*)::int AS n FROM migrations`)).toEqual([{ n: 0 }]);

      await ds.runMigrations({ transaction: 'each' });
      expect(await catalog(ds)).toEqual(first);
      expect(await ds.showMigrations()).toBe(false);
    } finally {
      await ds.destroy();
    }
  });

  it('a legacy database (bcrypt-only keys) upgrades in place: rows kept, keys waiting for their lookup hash', async () => {
    const url = await freshDatabase();
    // The legacy schema: tenants, users and api_keys with key_hash + key_prefix only.
    const legacyCount = MIGRATIONS.findIndex((m) => m.name === 'CreateLegacyApiKeys1732000001000') + 1;
    const legacy = new DataSource({
      ...dataSourceOptions(config, url),
      migrations: MIGRATIONS.slice(0, legacyCount),
    });
    await legacy.initialize();
    let keyId: string;
    try {
      await legacy.runMigrations({ transaction: 'each' });
      const [{ id: tenantId }] = await legacy.query(
        `INSERT INTO tenants (name) VALUES ('Legacy Co') RETURNING id`,
      );
      [{ id: keyId }] = await legacy.query(
        `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix, permissions)
         VALUES ($1, 'old key', '$2b$04$legacyhashlegacyhashlegacyhashlegacyhashlegacyhashle', 'sk-legacy01', '["chat"]')
         RETURNING id`,
        [tenantId],
      );
    } finally {
      await legacy.destroy();
    }

    const ds = new DataSource(dataSourceOptions(config, url));
    await ds.initialize();
    try {
      expect(await ds.runMigrations({ transaction: 'each' })).toHaveLength(MIGRATIONS.length - legacyCount);
      const [row] = await ds.query(
        `SELECT name, key_hash, key_prefix, permissions, key_lookup_hash, user_id, quota_period,
                current_quota_usage::int AS usage, spend::float AS spend
           FROM api_keys WHERE id = $1`,
        [keyId],
      );
      expect(row).toEqual({
        name: 'old key',
        key_hash: '$2b$04$legacyhashlegacyhashlegacyhashlegacyhashlegacyhashle',
        key_prefix: 'sk-legacy01',
        permissions: ['chat'],
        key_lookup_hash: null,
        user_id: null,
        quota_period: 'none',
        usage: 0,
        spend: 0,
      });
      expect(await ds.showMigrations()).toBe(false);
    } finally {
      await ds.destroy();
    }
  });
});
