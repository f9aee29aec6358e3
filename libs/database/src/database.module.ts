import { Global, Module, OnApplicationShutdown } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AppConfig } from '@app/config';
import { dataSourceOptions } from './data-source-options';
import { DatabaseUrlService } from './database-url.service';

/** How long shutdown waits for the pool's connections to close. */
const POOL_CLOSE_MS = 2000;

@Global()
@Module({
  providers: [DatabaseUrlService],
  exports: [DatabaseUrlService],
})
class DatabaseUrlModule {}

/**
 * TypeORM on PostgreSQL; entities are registered by their owning libs via
 * TypeOrmModule.forFeature (autoLoadEntities). Migrations run on start unless
 * MIGRATIONS_RUN=false.
 */
@Module({
  imports: [
    DatabaseUrlModule,
    TypeOrmModule.forRootAsync({
      inject: [AppConfig, DatabaseUrlService],
      useFactory: async (config: AppConfig, urls: DatabaseUrlService) => ({
        ...dataSourceOptions(config, await urls.resolve()),
        autoLoadEntities: true,
        retryAttempts: 3,
        retryDelay: 1000,
      }),
    }),
  ],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(
    private readonly dataSource: DataSource,
    private readonly urls: DatabaseUrlService,
  ) {}

  /** Close the pool first, then stop an embedded server (it refuses to stop under open sessions). */
  async onApplicationShutdown(): Promise<void> {
    if (this.dataSource.isInitialized) {
      // Ending the pool waits for its connections: bounded, for a server that stopped answering.
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        this.dataSource.destroy().then(() => true),
        new Promise<false>((r) => {
          timer = setTimeout(() => r(false), POOL_CLOSE_MS);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
      if (!closed) return; // an embedded server would refuse to stop under open sessions anyway
    }
    await this.urls.stopEmbedded();
  }
}
