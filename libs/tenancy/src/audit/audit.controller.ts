import { Controller, Get, Query } from '@nestjs/common';
import { ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated } from '../auth.decorators';
import { AuditPage, AuditQuery } from './audit.dto';
import { AuditService } from './audit.service';

@ApiTags('audit')
@Controller('api/v1/audit-log')
@Authenticated({ roles: ['admin'], tenantScoped: false })
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @ApiOperation({
    summary:
      "Audit log, newest first (admins: their tenant; master key: every tenant, or X-Tenant-ID's / tenant_id's)",
  })
  @ApiHeader({
    name: 'X-Tenant-ID',
    required: false,
    schema: { type: 'string', format: 'uuid' },
    description: 'Master key only (optional): read this tenant only. A JWT reads its own tenant.',
  })
  @ApiOkResponse({ type: AuditPage })
  list(@Query() q: AuditQuery): Promise<AuditPage> {
    return this.audit.list(q);
  }
}
