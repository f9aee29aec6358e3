import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiKeyAuthenticated, CurrentKey } from './api-key.decorators';
import { ApiKeysService } from './api-keys.service';
import { KeyInfoResponse } from './dto/api-key.dto';
import type { KeyPrincipal } from './key-principal';

@ApiTags('api-keys')
@Controller()
@ApiKeyAuthenticated()
export class KeyInfoController {
  constructor(private readonly keys: ApiKeysService) {}

  @Get(['api/v1/me', 'v1/key/info'])
  @ApiOperation({ summary: 'The calling key: id, name, prefix, tenant, owner, limits and usage' })
  @ApiOkResponse({ type: KeyInfoResponse })
  me(@CurrentKey() key: KeyPrincipal): Promise<KeyInfoResponse> {
    return this.keys.info(key);
  }
}
