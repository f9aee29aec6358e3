import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuthModule } from '@app/auth';
import { MetricsService } from '@app/observability';
import { ApiKey } from './api-key.entity';
import { ApiKeyGuard } from './api-key.guard';
import { ApiKeyBearerStrategy, ApiKeyHeaderStrategy } from './api-key.strategies';
import { ApiKeysController, KeyAliasController } from './api-keys.controller';
import { ApiKeysRepository } from './api-keys.repository';
import { ApiKeysService } from './api-keys.service';
import { AuthFailureLimiter } from './auth-failures';
import { KeyAdmission } from './key-admission';
import { KeyAuthService } from './key-auth.service';
import { KeyCache } from './key-cache';
import { KeyInfoController } from './key-info.controller';
import { LastUsedTracker } from './last-used';
import { LegacyKeysService } from './legacy-keys.service';

@Module({
  imports: [TypeOrmModule.forFeature([ApiKey]), AuthModule],
  controllers: [ApiKeysController, KeyAliasController, KeyInfoController],
  providers: [
    ApiKeysRepository,
    ApiKeysService,
    KeyCache,
    KeyAuthService,
    KeyAdmission,
    AuthFailureLimiter,
    LastUsedTracker,
    ApiKeyHeaderStrategy,
    ApiKeyBearerStrategy,
    ApiKeyGuard,
    LegacyKeysService,
  ],
  exports: [
    ApiKeysService,
    LegacyKeysService,
    KeyAuthService,
    KeyAdmission,
    ApiKeyGuard,
    AuthFailureLimiter,
    LastUsedTracker,
    KeyCache,
  ],
})
export class ApiKeysModule {
  constructor(metrics: MetricsService, cache: KeyCache) {
    metrics.trackCacheSize('apikey_lru', () => cache.sizes.lru);
    metrics.trackCacheSize('apikey_negative', () => cache.sizes.negative);
  }
}
