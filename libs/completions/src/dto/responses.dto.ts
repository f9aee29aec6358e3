import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/* Swagger documentation only: validateResponsesRequest checks the body (unknown fields pass through). */

export class ResponsesRequestDoc {
  @ApiProperty({ example: 'gpt-4o-mini', description: 'A model name or alias from GET /v1/models' })
  model: string;
  @ApiPropertyOptional({
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'object' } }],
    example: 'Tell me a three sentence bedtime story about a unicorn.',
    description:
      'Text, or input items (messages, tool outputs, ...); required unless previous_response_id is given',
  })
  input?: unknown;
  @ApiPropertyOptional() instructions?: string;
  @ApiPropertyOptional({
    minimum: 1,
    description: `The completion budget reserved; sent upstream as the cap (default QUOTA_DEFAULT_MAX_TOKENS)`,
  })
  max_output_tokens?: number;
  @ApiPropertyOptional({
    default: false,
    description: 'Server-sent events (response.created ... response.completed)',
  })
  stream?: boolean;
  @ApiPropertyOptional({
    default: true,
    description: 'Let the upstream keep it (GET / DELETE / previous_response_id)',
  })
  store?: boolean;
  @ApiPropertyOptional({ description: "Continue a response of this tenant's (404 otherwise)" })
  previous_response_id?: string;
  @ApiPropertyOptional({ type: 'array', items: { type: 'object' } }) tools?: unknown[];
  @ApiPropertyOptional({
    enum: [false],
    description: 'Background responses are refused (their usage could not be metered)',
  })
  background?: boolean;
}

export class ResponseUsageDoc {
  @ApiProperty() input_tokens: number;
  @ApiProperty({ example: { cached_tokens: 0 } }) input_tokens_details: object;
  @ApiProperty() output_tokens: number;
  @ApiProperty({ example: { reasoning_tokens: 0 } }) output_tokens_details: object;
  @ApiProperty() total_tokens: number;
}

export class ResponseDoc {
  @ApiProperty({ example: 'resp_67ccd2bed1ec8190b14f964abc054267' }) id: string;
  @ApiProperty({ example: 'response' }) object: string;
  @ApiProperty() created_at: number;
  @ApiProperty({ example: 'completed', enum: ['completed', 'incomplete', 'failed', 'in_progress'] })
  status: string;
  @ApiProperty() model: string;
  @ApiProperty({
    type: 'array',
    items: { type: 'object' },
    example: [
      {
        type: 'message',
        id: 'msg_67ccd2bf17f0819081ff3bb2cf6508e6',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'Once upon a time...', annotations: [] }],
      },
    ],
  })
  output: unknown[];
  @ApiProperty({ type: ResponseUsageDoc }) usage: ResponseUsageDoc;
}

export class ResponseDeletedDoc {
  @ApiProperty() id: string;
  @ApiProperty({ example: 'response.deleted' }) object: string;
  @ApiProperty({ example: true }) deleted: boolean;
}
