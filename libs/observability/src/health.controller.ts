import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckService,
  HealthIndicatorResult,
  HealthIndicatorService,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { Public } from '@app/tenancy';
import { ReadinessRegistry } from './readiness';

@ApiTags('health')
@Controller('health')
@Public()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    private readonly indicators: HealthIndicatorService,
    private readonly registry: ReadinessRegistry,
  ) {}

  @Get('live')
  @ApiOkResponse({ description: 'The process is up' })
  live() {
    return { status: 'ok' };
  }

  @Get()
  @HealthCheck()
  @ApiOkResponse({ description: 'Ready: PostgreSQL (and Redis when configured) answer' })
  @ApiServiceUnavailableResponse({ description: 'A dependency is down' })
  check() {
    return this.ready();
  }

  @Get('ready')
  @HealthCheck()
  @ApiOkResponse({ description: 'Ready: PostgreSQL (and Redis when configured) answer' })
  @ApiServiceUnavailableResponse({ description: 'A dependency is down' })
  ready() {
    return this.health.check([
      () => this.db.pingCheck('postgres', { timeout: 2000 }),
      ...this.registry.checks.map((c) => async (): Promise<HealthIndicatorResult> => {
        const ind = this.indicators.check(c.name);
        try {
          const details = await c.check();
          return ind.up(details);
        } catch (e) {
          return ind.down({ message: (e as Error).message });
        }
      }),
    ]);
  }
}
