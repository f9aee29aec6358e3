import { Controller, Get, Param, ParseUUIDPipe, Query, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiTags,
} from '@nestjs/swagger';
import type { Response } from 'express';
import { Authenticated } from '@app/tenancy';
import {
  KeyUsageResponse,
  RefusalsResponse,
  TenantLimitsResponse,
  UsageQuery,
  UsageRangeQuery,
  UsageReportResponse,
} from '../dto/usage.dto';
import { usageCsv } from './usage-csv';
import { UsageService } from './usage.service';

@ApiTags('usage')
@Controller('api/v1')
@Authenticated()
export class UsageController {
  constructor(private readonly usage: UsageService) {}

  @Get('usage')
  @ApiOperation({
    summary:
      'Requests, tokens and cost from the ledger, per key, user, model or day (members: their own); CSV with format=csv',
  })
  @ApiProduces('application/json', 'text/csv')
  @ApiOkResponse({
    type: UsageReportResponse,
    description: 'Usage from the ledger, grouped; admins see the tenant, members their own keys',
  })
  @ApiBadRequestResponse({ description: 'Bad date, range, group_by or format' })
  async report(
    @Query() q: UsageQuery,
    @Res({ passthrough: true }) res: Response,
  ): Promise<UsageReportResponse | string> {
    const report = await this.usage.report(q);
    if (q.format !== 'csv') return report;
    const day = (iso: string) => iso.slice(0, 10);
    res.set({
      'Content-Type': 'text/csv; charset=utf-8',
      'Content-Disposition': `attachment; filename="usage-${report.group_by}-${day(report.from)}-${day(report.to)}.csv"`,
    });
    return usageCsv(report);
  }

  @Get('api-keys/:id/usage')
  @ApiOperation({ summary: "A key's totals in a range, plus the live counters of its current period" })
  @ApiOkResponse({
    type: KeyUsageResponse,
    description: 'Totals of one key in the range, and its live counters',
  })
  @ApiNotFoundResponse({ description: 'No such key in the tenant (or, for a member, not their key)' })
  @ApiBadRequestResponse({ description: 'Bad date or range' })
  keyUsage(@Param('id', ParseUUIDPipe) id: string, @Query() q: UsageRangeQuery): Promise<KeyUsageResponse> {
    return this.usage.keyUsage(id, q);
  }
}

/** The tenant-wide figures of the usage page that members do not see (403): refusals, the tenant's limits. */
@ApiTags('usage')
@Controller('api/v1/usage')
@Authenticated({ roles: ['admin'] })
export class TenantUsageController {
  constructor(private readonly usage: UsageService) {}

  @Get('refusals')
  @ApiOperation({
    summary:
      "The tenant's refused requests per day and reason (quota, budget, rpm, tpm, model, key) (admins)",
    description:
      'Requests the gateway refused for its own reasons (a limit, a model the key may not use, an expired or ' +
      'revoked key, a disabled owner), per local day (QUOTA_TIMEZONE) of the range. Upstream errors are not ' +
      'refusals. Counted in memory and written every LEDGER_FLUSH_MS, so the last second may be missing.',
  })
  @ApiOkResponse({ type: RefusalsResponse })
  @ApiBadRequestResponse({ description: 'Bad date or range' })
  refusals(@Query() q: UsageRangeQuery): Promise<RefusalsResponse> {
    return this.usage.refusals(q);
  }

  @Get('limits')
  @ApiOperation({
    summary: "The tenant's limits and its current period against them (admins)",
    description:
      'Token quota, budget, reset period and tokens per minute of the whole tenant, the live counters of the ' +
      "current period (in-flight reservations included; null when the quota store is unreachable) and the ledger's " +
      'settled figures for the same period. Keys have their own: GET /api/v1/api-keys/{id}/usage.',
  })
  @ApiOkResponse({ type: TenantLimitsResponse })
  limits(): Promise<TenantLimitsResponse> {
    return this.usage.tenantLimits();
  }
}
