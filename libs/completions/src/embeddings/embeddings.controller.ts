import { Body, Controller, Post, Req, Res } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { EmbeddingsRequestDoc, EmbeddingsResponseDoc } from '../dto/embeddings.dto';
import { MeteredRoute } from '../metered-route';
import { EmbeddingsService } from './embeddings.service';

@ApiTags('completions')
@Controller()
@ApiKeyAuthenticated()
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post(['v1/embeddings', 'api/v1/embeddings'])
  @RequireScope('embeddings')
  @ApiOperation({
    summary: 'Embeddings (OpenAI format)',
    description:
      'Metered on input tokens (the upstream usage) at the deployment embedding price ' +
      '(pricing.embedding_per_million, else input_per_million), with the same limits, headers and ledger rows as chat.',
  })
  @ApiBody({ type: EmbeddingsRequestDoc })
  @ApiOkResponse({ type: EmbeddingsResponseDoc })
  @MeteredRoute(
    'Invalid request, a model that does not serve embeddings (unsupported_endpoint), or an upstream 4xx',
  )
  embed(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.embeddings.embed(key, body, res, (req as { id?: string }).id);
  }
}
