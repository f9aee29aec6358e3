import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig, ConfigModule } from '@app/config';
import { ApiKeysModule } from '@app/api-keys';
import { AuthModule } from '@app/auth';
import { CompletionsModule } from '@app/completions';
import { DatabaseModule, RedisConnectionModule } from '@app/database';
import { ObservabilityModule } from '@app/observability';
import { QuotaModule, QuotaService } from '@app/quota';
import { TenancyModule } from '@app/tenancy';
import { AdminUiModule } from './admin/admin-ui.module';

/** Composition root: wires the libs together, nothing else. */
@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule,
        DatabaseModule,
        RedisConnectionModule.forRoot(config),
        TenancyModule,
        AuthModule,
        QuotaModule,
        ApiKeysModule,
        // Completions charge through the quota lib (reserve before, settle after).
        CompletionsModule.forRoot({ meter: QuotaService, imports: [QuotaModule] }),
        AdminUiModule,
      ],
    };
  }
}
