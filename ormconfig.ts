import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig } from './libs/config/src';
import { dataSourceOptions, entityGlob } from './libs/database/src';

/**
 * The DataSource the TypeORM CLI uses (npm run migration:*). Same options as the app
 * (dataSourceOptions), pointed at DATABASE_URL, or at the embedded server's default
 * address when it is running (start the gateway once first).
 */
const config = loadConfig();
const url =
  config.DATABASE_URL ?? `postgres://postgres:postgres@127.0.0.1:${config.EMBEDDED_PG_PORT}/postgres`;

export default new DataSource({
  ...dataSourceOptions(config, url, [entityGlob(__dirname)]),
  migrationsRun: false,
});
