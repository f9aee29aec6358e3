import { Global, Module, OnApplicationShutdown } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AppConfig } from '@app/config';
import { dataSourceOptions } from './data-source-options';
import { DatabaseUrlService } from './database-url.service';

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
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.urls.stopEmbedded();
  }
}
