import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiProduces,
  ApiTags,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { ResponseDeletedDoc, ResponseDoc, ResponsesRequestDoc } from '../dto/responses.dto';
import { MeteredRoute } from '../metered-route';
import { ResponsesService } from './responses.service';

const ID = ApiParam({ name: 'id', example: 'resp_67ccd2bed1ec8190b14f964abc054267' });
const NOT_FOUND = ApiNotFoundResponse({
  description: 'No response with this id was made with a key of your tenant (response_not_found)',
});
const queryOf = (req: Request) => {
  const i = req.originalUrl.indexOf('?');
  return i < 0 ? '' : req.originalUrl.slice(i + 1);
};

/** OpenAI's Responses API (what `client.responses.*` and @ai-sdk/openai call), under /v1 and /api/v1. */
@ApiTags('completions')
@Controller()
@ApiKeyAuthenticated()
export class ResponsesController {
  constructor(private readonly responses: ResponsesService) {}

  @Post(['v1/responses', 'api/v1/responses'])
  @RequireScope('responses')
  @ApiOperation({
    summary: 'Create a response (OpenAI Responses API; stream: true for response.* server-sent events)',
    description:
      'Served by openai and mock deployments; metered like chat (usage from response.usage). ' +
      'The stored response id is reachable only with keys of your tenant.',
  })
  @ApiBody({ type: ResponsesRequestDoc })
  @ApiProduces('application/json', 'text/event-stream')
  @ApiOkResponse({ type: ResponseDoc })
  @MeteredRoute(
    'Invalid request, a model without the Responses API (unsupported_endpoint), background: true, or an upstream 4xx',
  )
  create(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.responses.create(key, body, res, (req as { id?: string }).id);
  }

  @Get(['v1/responses/:id', 'api/v1/responses/:id'])
  @RequireScope('responses')
  @ApiOperation({ summary: 'Retrieve a stored response (passed through to the deployment that made it)' })
  @ID
  @ApiOkResponse({ type: ResponseDoc })
  @NOT_FOUND
  get(
    @CurrentKey() key: KeyPrincipal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.responses.relay(key, id, { method: 'GET', suffix: '', query: queryOf(req) }, res);
  }

  @Delete(['v1/responses/:id', 'api/v1/responses/:id'])
  @RequireScope('responses')
  @ApiOperation({ summary: 'Delete a stored response' })
  @ID
  @ApiOkResponse({ type: ResponseDeletedDoc })
  @NOT_FOUND
  remove(@CurrentKey() key: KeyPrincipal, @Param('id') id: string, @Res() res: Response): Promise<void> {
    return this.responses.relay(key, id, { method: 'DELETE', suffix: '', query: '' }, res);
  }

  @Post(['v1/responses/:id/cancel', 'api/v1/responses/:id/cancel'])
  @RequireScope('responses')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a response (the upstream answers for background responses only)' })
  @ID
  @ApiOkResponse({ type: ResponseDoc })
  @ApiBadRequestResponse({ description: 'Not a background response (upstream answer)' })
  @NOT_FOUND
  cancel(@CurrentKey() key: KeyPrincipal, @Param('id') id: string, @Res() res: Response): Promise<void> {
    return this.responses.relay(key, id, { method: 'POST', suffix: '/cancel', query: '' }, res);
  }
}
