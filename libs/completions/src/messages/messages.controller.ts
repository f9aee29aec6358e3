import { Body, Controller, Headers, HttpCode, Post, Req, Res, UseFilters } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiHeader,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiTags,
  ApiTooManyRequestsResponse,
} from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiKeyAuthenticated, CurrentKey, KeyPrincipal, RequireScope } from '@app/api-keys';
import { AnthropicExceptionFilter } from '@app/observability';
import { MessagesService } from './messages.service';

const ANTHROPIC_HEADERS = [
  ApiHeader({
    name: 'anthropic-version',
    required: false,
    description: 'Passed on to anthropic deployments',
  }),
  ApiHeader({ name: 'anthropic-beta', required: false, description: 'Passed on to anthropic deployments' }),
];

/**
 * Anthropic's Messages API, under /v1 (what the Anthropic SDKs and Claude Code call with
 * ANTHROPIC_BASE_URL) and /api/v1. The virtual key goes as `x-api-key` or
 * `Authorization: Bearer`; errors come in Anthropic's shape.
 */
@ApiTags('messages')
@Controller()
@ApiKeyAuthenticated()
@UseFilters(AnthropicExceptionFilter)
export class MessagesController {
  constructor(private readonly messages: MessagesService) {}

  @Post(['v1/messages', 'api/v1/messages'])
  @RequireScope('messages')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create a message (Anthropic Messages format; stream: true for server-sent events)',
    description:
      'Routed by the same table as chat completions and metered the same way. Anthropic deployments get the ' +
      "client's body as sent (max_tokens = the granted budget); OpenAI-compatible ones a translation.",
  })
  @ApiBody({
    schema: {
      type: 'object',
      example: {
        model: 'claude-sonnet-4-0',
        max_tokens: 256,
        messages: [{ role: 'user', content: 'Hello' }],
      },
    },
  })
  @ApiProduces('application/json', 'text/event-stream')
  @ApiOkResponse({
    description: 'An Anthropic message (or its event stream)',
    schema: {
      type: 'object',
      example: {
        id: 'msg_01',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-0',
        content: [{ type: 'text', text: 'Hello!' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 9, output_tokens: 3 },
      },
    },
  })
  @ApiBadRequestResponse({ description: 'invalid_request_error' })
  @ApiNotFoundResponse({ description: 'not_found_error: unknown model' })
  @ApiTooManyRequestsResponse({
    description: 'rate_limit_error: quota or budget exceeded (retry-after, anthropic-ratelimit-*)',
  })
  create(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Headers('anthropic-version') version: string | undefined,
    @Headers('anthropic-beta') beta: string | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.messages.create(key, body, { version, beta }, res, (req as { id?: string }).id);
  }

  @Post(['v1/messages/count_tokens', 'api/v1/messages/count_tokens'])
  @RequireScope('messages')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Count the input tokens of a message (Anthropic format; not metered)',
    description: "An anthropic deployment's own count when the model has one, else the gateway's tokenizer.",
  })
  @ApiBody({
    schema: {
      type: 'object',
      example: { model: 'claude-sonnet-4-0', messages: [{ role: 'user', content: 'Hello' }] },
    },
  })
  @ApiOkResponse({ schema: { type: 'object', example: { input_tokens: 9 } } })
  @ApiBadRequestResponse({ description: 'invalid_request_error' })
  @ApiNotFoundResponse({ description: 'not_found_error: unknown model' })
  countTokens(
    @CurrentKey() key: KeyPrincipal,
    @Body() body: unknown,
    @Headers('anthropic-version') version: string | undefined,
    @Headers('anthropic-beta') beta: string | undefined,
  ) {
    return this.messages.countTokens(key, body, { version, beta });
  }
}
for (const d of ANTHROPIC_HEADERS) {
  d(
    MessagesController.prototype,
    'create',
    Object.getOwnPropertyDescriptor(MessagesController.prototype, 'create')!,
  );
  d(
    MessagesController.prototype,
    'countTokens',
    Object.getOwnPropertyDescriptor(MessagesController.prototype, 'countTokens')!,
  );
}
