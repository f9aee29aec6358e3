import 'reflect-metadata';
import { dirname } from 'node:path';
import { DataSource } from 'typeorm';
import { loadConfig } from '@app/config';
import { dataSourceOptions } from '@app/database';
import { dbUrl, hasRedisServer, startPostgres, startRedis, TEMPLATE_DB, withClient } from './servers';

/**
 * Starts one real PostgreSQL (and Redis when redis-server is installed) for the e2e run,
 * migrates a template database once; each test file clones it (see harness/app.ts).
 */
export default async function globalSetup(): Promise<void> {
  const { pg, adminUrl, dataDir } = await startPostgres();
  (globalThis as Record<string, unknown>).__GW_PG__ = pg;
  (globalThis as Record<string, unknown>).__GW_PG_DIR__ = dirname(dataDir);
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${TEMPLATE_DB}`));
  const config = loadConfig({
    DATA_DIR: '/tmp/gw-test-config',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
  });
  const ds = new DataSource(dataSourceOptions(config, dbUrl(adminUrl, TEMPLATE_DB)));
  await ds.initialize();
  await ds.runMigrations({ transaction: 'each' });
  await ds.destroy();
  process.env.TEST_PG_ADMIN_URL = adminUrl;

  if (hasRedisServer()) {
    const redis = await startRedis();
    (globalThis as Record<string, unknown>).__GW_REDIS__ = redis.proc;
    process.env.TEST_REDIS_URL = redis.url;
  } else if (process.env.CI === 'true') {
    throw new Error(
      'redis-server is not installed, and CI=true: the Redis suites must run (apt-get install -y redis-server)',
    );
  } else {
    process.stderr.write(
      '\n\n  !!! redis-server not found on PATH: Redis suites are SKIPPED. Install it: apt-get install -y redis-server !!!\n\n',
    );
  }
}
