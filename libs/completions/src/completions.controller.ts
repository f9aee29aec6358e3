import { Body, Controller, Get, Post, Req, Res } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { CompletionsService } from './completions.service';
import { MeteredRoute } from './metered-route';
import { ChatCompletionDoc, ChatCompletionRequestDoc, ModelListDoc } from './dto/chat-completion.dto';

/** The OpenAI-compatible API, under /v1 (what the SDKs call) and /api/v1. */
@ApiTags('completions')
@Controller()
@ApiKeyAuthenticated()
export class CompletionsController {
  constructor(private readonly completions: CompletionsService) {}

  @Post(['v1/chat/completions', 'api/v1/chat/completions'])
  @RequireScope('chat')
  @ApiOperation({
    summary: 'Chat completion (OpenAI format; stream: true for server-sent events)',
    description: 'Fields the gateway does not know are passed on to OpenAI-compatible upstreams.',
  })
  @ApiBody({ type: ChatCompletionRequestDoc })
  @ApiProduces('application/json', 'text/event-stream')
  @ApiOkResponse({ type: ChatCompletionDoc })
  @MeteredRoute('Invalid request, or an upstream 4xx passed on')
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
