import { Controller, Get, Param, ParseUUIDPipe, Query } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { Authenticated } from '@app/tenancy';
import { KeyUsageResponse, UsageQuery, UsageRangeQuery, UsageReportResponse } from '../dto/usage.dto';
import { UsageService } from './usage.service';

@ApiTags('usage')
@Controller('api/v1')
@Authenticated()
export class UsageController {
  constructor(private readonly usage: UsageService) {}

  @Get('usage')
  @ApiOperation({
    summary: 'Requests, tokens and cost from the ledger, per key, user, model or day (members: their own)',
  })
  @ApiOkResponse({
    type: UsageReportResponse,
    description: 'Usage from the ledger, grouped; admins see the tenant, members their own keys',
  })
  @ApiBadRequestResponse({ description: 'Bad date, range or group_by' })
  report(@Query() q: UsageQuery): Promise<UsageReportResponse> {
    return this.usage.report(q);
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
