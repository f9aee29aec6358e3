export { DatabaseModule } from './database.module';
export { DatabaseUrlService } from './database-url.service';
export { dataSourceOptions } from './data-source-options';
export { entityGlob } from './entities';
export { EmbeddedPostgres } from './embedded-postgres';
export type { EmbeddedPostgresOptions } from './embedded-postgres';
export { MIGRATIONS } from './migrations';
export { connectionOptions, RedisConnection, RedisConnectionModule } from './redis';
export type { RedisClient, SlotOwner } from './redis';
