import { Body, Controller, Get, HttpCode, Post, Req, Res } from '@nestjs/common';
import {
  ApiBadGatewayResponse,
  ApiBadRequestResponse,
  ApiBody,
  ApiGatewayTimeoutResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { CompletionsService } from './completions.service';
import { ChatCompletionDoc, ChatCompletionRequestDoc, ModelListDoc } from './dto/chat-completion.dto';

/** The OpenAI-compatible API, under /v1 (what the SDKs call) and /api/v1. */
@ApiTags('completions')
@Controller()
@ApiKeyAuthenticated()
export class CompletionsController {
  constructor(private readonly completions: CompletionsService) {}

  @Post(['v1/chat/completions', 'api/v1/chat/completions'])
  @RequireScope('chat')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Chat completion (OpenAI format; stream: true for server-sent events)',
    description: 'Fields the gateway does not know are passed on to OpenAI-compatible upstreams.',
  })
  @ApiBody({ type: ChatCompletionRequestDoc })
  @ApiProduces('application/json', 'text/event-stream')
  @ApiOkResponse({ type: ChatCompletionDoc })
  @ApiBadRequestResponse({ description: 'Invalid request, or an upstream 4xx passed on' })
  @ApiNotFoundResponse({ description: 'Unknown model (model_not_found)' })
  @ApiGatewayTimeoutResponse({ description: 'The upstream did not answer in time (502: it failed)' })
  @ApiBadGatewayResponse({ description: 'Every upstream of the model failed' })
  @ApiTooManyRequestsResponse({
    description:
      'Token quota or budget of the key, user or tenant exceeded (insufficient_quota), the key rpm reached, ' +
      'or too many failed key attempts; Retry-After and x-ratelimit-* headers say when to retry',
  })
  @ApiServiceUnavailableResponse({
    description: 'The quota store cannot be reached (QUOTA_FAIL_MODE=closed) or the usage ledger is full',
  })
  // @Body() typed unknown: the global whitelist pipe stands aside; validateChatRequest checks it.
  chat(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.completions.chat(key, body, res, (req as { id?: string }).id);
  }

  @Get(['v1/models', 'api/v1/models'])
  @RequireScope('models')
  @ApiOperation({ summary: 'The models (names and aliases) this key may use' })
  @ApiOkResponse({ type: ModelListDoc })
  models(@CurrentKey() key: KeyPrincipal) {
    return this.completions.listModels(key);
  }
}
