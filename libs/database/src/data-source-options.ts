import { DataSourceOptions } from 'typeorm';
import { AppConfig } from '@app/config';
import { MIGRATIONS } from './migrations';

/** The one DataSource definition: used by DatabaseModule, ormconfig.ts, the CLI and tests. */
export function dataSourceOptions(
  config: AppConfig,
  url: string,
  entities: DataSourceOptions['entities'] = [],
) {
  return {
    type: 'postgres' as const,
    url,
    entities,
    migrations: MIGRATIONS,
    migrationsRun: config.MIGRATIONS_RUN,
    migrationsTransactionMode: 'each' as const,
    synchronize: false,
    // The schema comes from the migrations only: no CREATE EXTENSION "uuid-ossp" on connect, and
    // TypeORM's uuid default is gen_random_uuid() (core PostgreSQL >= 13), as the migrations use.
    installExtensions: false,
    uuidExtension: 'pgcrypto' as const,
    logging: false,
    extra: { max: 20, connectionTimeoutMillis: 5000 },
  };
}
