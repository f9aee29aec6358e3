import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/*
 * Swagger documentation only. The request is validated by validateChatRequest
 * (chat/chat-request.ts), not by these classes: unknown fields must pass through.
 */

export class ChatMessageDoc {
  @ApiProperty({ enum: ['system', 'developer', 'user', 'assistant', 'tool'] }) role: string;
  @ApiPropertyOptional({
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object' } }],
    nullable: true,
    description: 'Text, or content parts ({type: "text", text} | {type: "image_url", image_url: {url}})',
  })
  content?: unknown;
  @ApiPropertyOptional() name?: string;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object' }, description: 'Assistant tool calls' })
  tool_calls?: unknown[];
  @ApiPropertyOptional({ description: 'Tool messages: the call answered' }) tool_call_id?: string;
}

export class StreamOptionsDoc {
  @ApiPropertyOptional({ description: 'Send a last chunk with usage (choices: [])' }) include_usage?: boolean;
}

export class ChatCompletionRequestDoc {
  @ApiProperty({ example: 'gpt-4o-mini', description: 'A model name or alias from GET /v1/models' })
  model: string;
  @ApiProperty({ type: [ChatMessageDoc], example: [{ role: 'user', content: 'Hello!' }] })
  messages: ChatMessageDoc[];
  @ApiPropertyOptional({ default: false, description: 'Server-sent events, ending with data: [DONE]' })
  stream?: boolean;
  @ApiPropertyOptional({ type: StreamOptionsDoc }) stream_options?: StreamOptionsDoc;
  @ApiPropertyOptional({ minimum: 1 }) max_tokens?: number;
  @ApiPropertyOptional({ minimum: 1 }) max_completion_tokens?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 2 }) temperature?: number;
  @ApiPropertyOptional({ minimum: 0, maximum: 1 }) top_p?: number;
  @ApiPropertyOptional({ minimum: 1, maximum: 128 }) n?: number;
  @ApiPropertyOptional({ oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] })
  stop?: unknown;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object' } }) tools?: unknown[];
  @ApiPropertyOptional({
    oneOf: [{ type: 'string', enum: ['none', 'auto', 'required'] }, { type: 'object' }],
  })
  tool_choice?: unknown;
  @ApiPropertyOptional() user?: string;
}

export class UsageDoc {
  @ApiProperty() prompt_tokens: number;
  @ApiProperty() completion_tokens: number;
  @ApiProperty() total_tokens: number;
}

export class ChatCompletionDoc {
  @ApiProperty() id: string;
  @ApiProperty({ example: 'chat.completion' }) object: string;
  @ApiProperty() created: number;
  @ApiProperty() model: string;
  @ApiProperty({
    type: 'array',
    items: { type: 'object' },
    example: [{ index: 0, message: { role: 'assistant', content: 'Hi!' }, finish_reason: 'stop' }],
  })
  choices: unknown[];
  @ApiProperty({ type: UsageDoc }) usage: UsageDoc;
}

export class ModelDoc {
  @ApiProperty({ example: 'gpt-4o-mini' }) id: string;
  @ApiProperty({ example: 'model' }) object: string;
  @ApiProperty() created: number;
  @ApiProperty({ example: 'openai', description: 'The provider of the first deployment' }) owned_by: string;
  @ApiProperty({
    type: [String],
    enum: ['chat', 'embeddings', 'responses'],
    example: ['chat', 'embeddings', 'responses'],
    description:
      'Gateway extension: the endpoints this model serves (/v1/chat/completions, /v1/embeddings, /v1/responses)',
  })
  endpoints: string[];
}

export class ModelListDoc {
  @ApiProperty({ example: 'list' }) object: string;
  @ApiProperty({ type: [ModelDoc] }) data: ModelDoc[];
}
