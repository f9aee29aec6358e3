import { Body, Controller, Get, Param, ParseUUIDPipe, Patch, Post, Query } from '@nestjs/common';
import {
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiCreatedResponse,
  ApiTags,
  ApiConflictResponse,
  ApiOperation,
} from '@nestjs/swagger';
import { Authenticated } from './auth.decorators';
import {
  CreateTenantDto,
  TenantListItem,
  TenantPage,
  TenantResponse,
  UpdateTenantDto,
} from './dto/tenant.dto';
import { Page, PageQuery } from './dto/page.dto';
import { TenantsService } from './tenants.service';

@ApiTags('tenants')
@Controller('api/v1/tenants')
@Authenticated({ masterOnly: true, tenantScoped: false })
export class TenantsController {
  constructor(private readonly tenants: TenantsService) {}

  @Post()
  @ApiOperation({ summary: 'Create a tenant, with optional limits (master key)' })
  @ApiCreatedResponse({ type: TenantResponse })
  @ApiConflictResponse({ description: 'Name taken' })
  async create(@Body() dto: CreateTenantDto): Promise<TenantResponse> {
    return TenantResponse.from(await this.tenants.create(dto));
  }

  @Get()
  @ApiOperation({ summary: 'List tenants with their admins (master key)' })
  @ApiOkResponse({ type: TenantPage })
  list(@Query() q: PageQuery): Promise<Page<TenantListItem>> {
    return this.tenants.list(q.offset, q.limit);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A tenant with its limits (master key)' })
  @ApiOkResponse({ type: TenantResponse })
  @ApiNotFoundResponse()
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<TenantResponse> {
    return TenantResponse.from(await this.tenants.get(id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Rename a tenant, change its limits, or disable it (master key)' })
  @ApiOkResponse({ type: TenantResponse, description: 'Set status "disabled" to disable the tenant' })
  @ApiNotFoundResponse()
  async update(
    @Param('id', ParseUUIDPipe) id: string,
    @Body() dto: UpdateTenantDto,
  ): Promise<TenantResponse> {
    return TenantResponse.from(await this.tenants.update(id, dto));
  }
}
