import { Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig } from '@app/config';
import { HealthController } from './health.controller';
import { MetricsController } from './metrics.controller';
import { MetricsService } from './metrics.service';
import { pinoParams } from './logging';
import { ReadinessRegistry } from './readiness';
import { RefusalTally } from './refusal-tally';

@Global()
@Module({
  imports: [
    LoggerModule.forRootAsync({ inject: [AppConfig], useFactory: (config: AppConfig) => pinoParams(config) }),
    TerminusModule.forRoot({ errorLogStyle: 'json', gracefulShutdownTimeoutMs: 0 }),
  ],
  controllers: [HealthController, MetricsController],
  providers: [ReadinessRegistry, MetricsService, RefusalTally],
  exports: [ReadinessRegistry, MetricsService, RefusalTally],
})
export class ObservabilityModule {}
