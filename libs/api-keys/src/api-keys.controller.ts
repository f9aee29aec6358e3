import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Patch,
  Post,
  Query,
} from '@nestjs/common';
import {
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { Authenticated, Page } from '@app/tenancy';
import { ApiKeysService } from './api-keys.service';
import {
  ApiKeyCreatedResponse,
  ApiKeyPage,
  ApiKeyResponse,
  CreateApiKeyDto,
  GenerateKeyDto,
  KeyListQuery,
  RegenerateApiKeyDto,
  UpdateApiKeyDto,
} from './dto/api-key.dto';

@ApiTags('api-keys')
@Controller('api/v1/api-keys')
@Authenticated()
export class ApiKeysController {
  constructor(private readonly keys: ApiKeysService) {}

  @Post()
  @ApiOperation({ summary: 'Create a key (the full key is in this response only)' })
  @ApiCreatedResponse({ type: ApiKeyCreatedResponse })
  @ApiConflictResponse({ description: 'Imported key already exists' })
  @ApiForbiddenResponse({ description: 'A member naming another owner' })
  create(@Body() dto: CreateApiKeyDto): Promise<ApiKeyCreatedResponse> {
    return this.keys.create(dto);
  }

  @Get()
  @ApiOperation({
    summary: "List keys (members: their own; admins: the tenant's): search, filter by status or owner, sort",
  })
  @ApiOkResponse({ type: ApiKeyPage })
  list(@Query() q: KeyListQuery): Promise<Page<ApiKeyResponse>> {
    return this.keys.list(q);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A key: owner, limits, usage, status (never the key itself)' })
  @ApiOkResponse({ type: ApiKeyResponse })
  @ApiNotFoundResponse()
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<ApiKeyResponse> {
    return ApiKeyResponse.from(await this.keys.get(id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change name, limits, models or expiry (limits: admins only)' })
  @ApiOkResponse({ type: ApiKeyResponse })
  @ApiNotFoundResponse()
  async update(
    @Param('id', ParseUUIDPipe) id: string,
    @Body() dto: UpdateApiKeyDto,
  ): Promise<ApiKeyResponse> {
    return ApiKeyResponse.from(await this.keys.update(id, dto));
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Revoke a key (refused everywhere at once)' })
  @ApiOkResponse({ type: ApiKeyResponse })
  @ApiNotFoundResponse()
  async revoke(@Param('id', ParseUUIDPipe) id: string): Promise<ApiKeyResponse> {
    return ApiKeyResponse.from(await this.keys.revoke(id));
  }

  @Post(':id/regenerate')
  @HttpCode(200)
  @ApiOperation({
    summary: 'New key material for the same key; the old key works during the optional grace period',
  })
  @ApiOkResponse({ type: ApiKeyCreatedResponse })
  @ApiNotFoundResponse()
  @ApiConflictResponse({ description: 'The key is revoked' })
  regenerate(
    @Param('id', ParseUUIDPipe) id: string,
    @Body() dto: RegenerateApiKeyDto,
  ): Promise<ApiKeyCreatedResponse> {
    return this.keys.regenerate(id, dto.grace_period_seconds ?? 0);
  }
}

/** The backfill-tool document's routes (../shared/seeds/004), kept as aliases. */
@ApiTags('api-keys')
@Controller('auth/key')
@Authenticated()
export class KeyAliasController {
  constructor(private readonly keys: ApiKeysService) {}

  @Post('generate')
  @ApiOperation({ summary: 'Alias of POST /api/v1/api-keys (backfill-tool document)' })
  @ApiCreatedResponse({ type: ApiKeyCreatedResponse })
  generate(@Body() dto: GenerateKeyDto): Promise<ApiKeyCreatedResponse> {
    return this.keys.create(dto);
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Alias of DELETE /api/v1/api-keys/:id (backfill-tool document)' })
  @ApiOkResponse({ type: ApiKeyResponse })
  @ApiNotFoundResponse()
  async remove(@Param('id', ParseUUIDPipe) id: string): Promise<ApiKeyResponse> {
    return ApiKeyResponse.from(await this.keys.revoke(id));
  }
}
