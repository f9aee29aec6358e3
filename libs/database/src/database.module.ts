import { Global, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AppConfig } from '@app/config';
import { dataSourceOptions } from './data-source-options';
import { DatabaseUrlService } from './database-url.service';
import { endpoint, probePostgres, waitForDependency } from './startup-wait';

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
      useFactory: async (config: AppConfig, urls: DatabaseUrlService) => {
        const url = await urls.resolve();
        // An external PostgreSQL often comes up after the gateway (compose, Kubernetes): wait
        // for it with back-off, then fail in one line (README "Clean failure").
        if (!urls.isEmbedded)
          await waitForDependency(
            `PostgreSQL at ${endpoint(url)}`,
            () => probePostgres(url),
            config.STARTUP_TIMEOUT_MS,
            new Logger('Database'),
          );
        return {
          ...dataSourceOptions(config, url),
          autoLoadEntities: true,
          // The wait above did the retrying; a failure now (a migration) is final, and
          // @nestjs/typeorm's retry would print a stack trace per try.
          toRetry: () => false,
        };
      },
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
