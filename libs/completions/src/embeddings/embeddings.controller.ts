import { Body, Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import {
  ApiBadGatewayResponse,
  ApiBadRequestResponse,
  ApiBody,
  ApiGatewayTimeoutResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { EmbeddingsRequestDoc, EmbeddingsResponseDoc } from '../dto/embeddings.dto';
import { EmbeddingsService } from './embeddings.service';

@ApiTags('completions')
@Controller()
@ApiKeyAuthenticated()
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post(['v1/embeddings', 'api/v1/embeddings'])
  @RequireScope('embeddings')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Embeddings (OpenAI format)',
    description:
      'Metered on input tokens (the upstream usage) at the deployment embedding price ' +
      '(pricing.embedding_per_million, else input_per_million), with the same limits, headers and ledger rows as chat.',
  })
  @ApiBody({ type: EmbeddingsRequestDoc })
  @ApiOkResponse({ type: EmbeddingsResponseDoc })
  @ApiBadRequestResponse({
    description:
      'Invalid request, a model that does not serve embeddings (unsupported_endpoint), or an upstream 4xx',
  })
  @ApiNotFoundResponse({ description: 'Unknown model (model_not_found)' })
  @ApiGatewayTimeoutResponse({ description: 'The upstream did not answer in time' })
  @ApiBadGatewayResponse({ description: 'Every upstream of the model failed' })
  @ApiTooManyRequestsResponse({
    description:
      'A token quota, budget or rate limit of the key, user or tenant; Retry-After says when to retry',
  })
  @ApiServiceUnavailableResponse({ description: 'The quota store or the usage ledger is unavailable' })
  embed(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.embeddings.embed(key, body, res, (req as { id?: string }).id);
  }
}
