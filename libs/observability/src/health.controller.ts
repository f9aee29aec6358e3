import { Controller, Get, Res, ServiceUnavailableException } from '@nestjs/common';
import type { Response } from 'express';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckResult,
  HealthCheckService,
  HealthIndicatorResult,
  HealthIndicatorService,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { Public } from './access';
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
  @ApiOperation({ summary: 'Liveness: the process answers (restart only when this fails)' })
  @ApiOkResponse({
    description: 'The process is up',
    schema: { type: 'object', properties: { status: { type: 'string', example: 'ok' } } },
  })
  live() {
    return { status: 'ok' };
  }

  @Get()
  @ApiOperation({
    summary: 'Readiness, as /health/ready',
  })
  @HealthCheck()
  @ApiOkResponse({ description: 'Ready: PostgreSQL (and Redis when configured) answer' })
  @ApiServiceUnavailableResponse({ description: 'A dependency is down' })
  check(@Res({ passthrough: true }) res: Response) {
    return this.ready(res);
  }

  /**
   * 200 with terminus' `{status, info, details}`; 503 with the error envelope
   * (`error.message` names what is down) plus the same `status`, `info` and `details`.
   */
  @Get('ready')
  @ApiOperation({
    summary: 'Readiness: PostgreSQL, Redis, ledger backlog (503: take the instance out of the load balancer)',
  })
  @HealthCheck()
  @ApiOkResponse({ description: 'Ready: PostgreSQL (and Redis when configured) answer' })
  @ApiServiceUnavailableResponse({ description: 'A dependency is down' })
  async ready(@Res({ passthrough: true }) res: Response) {
    if (this.registry.draining) {
      res.status(503);
      return {
        error: {
          message: 'Not ready: shutting down',
          type: 'server_error',
          code: 'shutting_down',
          param: null,
        },
        status: 'shutting_down',
      };
    }
    try {
      return await this.health.check([
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
    } catch (e) {
      if (!(e instanceof ServiceUnavailableException)) throw e;
      const result = e.getResponse() as HealthCheckResult;
      const down = Object.entries(result.error ?? {}).map(([name, v]) =>
        v?.message ? `${name} (${String(v.message)})` : name,
      );
      res.status(503);
      return {
        error: {
          message: `Not ready: ${down.join(', ') || 'a check failed'} down`,
          type: 'server_error',
          code: 'not_ready',
          param: null,
        },
        status: result.status,
        info: result.info,
        details: result.details,
      };
    }
  }
}
