import { Controller, Get, Headers, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import type { Response } from 'express';
import { AppConfig } from '@app/config';
import { Public } from './access';
import { ApiError } from './api-error';
import { MetricsService } from './metrics.service';
import { tokenMatches } from './metrics-token';

/**
 * Prometheus scrape endpoint. Public for the admin guard; when METRICS_TOKEN is set it
 * needs `Authorization: Bearer <METRICS_TOKEN>`. In the OpenAPI document as text/plain;
 * the metrics themselves are described in the README, "Operating it".
 */
@ApiTags('health')
@Controller('metrics')
@Public()
export class MetricsController {
  constructor(
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @ApiOperation({
    summary: 'Prometheus metrics (text exposition format)',
    description: 'Public unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>`.',
  })
  @ApiProduces('text/plain')
  @ApiOkResponse({
    description: 'Prometheus text format 0.0.4',
    content: {
      'text/plain': {
        schema: { type: 'string' },
        example:
          '# HELP gateway_http_requests_total HTTP requests\n# TYPE gateway_http_requests_total counter\ngateway_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 42\n',
      },
    },
  })
  @ApiUnauthorizedResponse({ description: 'METRICS_TOKEN is set and the bearer token is missing or wrong' })
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
