import { Controller, Get, Headers, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Response } from 'express';
import { AppConfig } from '@app/config';
import { Public } from '@app/tenancy';
import { ApiError } from './api-error';
import { MetricsService } from './metrics.service';
import { tokenMatches } from './metrics-token';

/**
 * Prometheus scrape endpoint. Public for the admin guard; when METRICS_TOKEN is set it
 * needs `Authorization: Bearer <METRICS_TOKEN>`. Left out of the OpenAPI document (it is
 * not JSON); documented in the README, "Operating it".
 */
@ApiExcludeController()
@Controller('metrics')
@Public()
export class MetricsController {
  constructor(
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  async scrape(@Headers('authorization') authorization: string | undefined, @Res() res: Response) {
    const token = this.config.METRICS_TOKEN;
    if (token && !tokenMatches(token, authorization)) {
      throw new ApiError(
        401,
        'Metrics need Authorization: Bearer <METRICS_TOKEN>',
        'authentication_error',
        'unauthorized',
        {
          'WWW-Authenticate': 'Bearer realm="metrics"',
        },
      );
    }
    const body = await this.metrics.render();
    res.setHeader('Content-Type', this.metrics.contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.send(body);
  }
}
