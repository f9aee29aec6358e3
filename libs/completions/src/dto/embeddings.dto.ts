import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/* Swagger documentation only: validateEmbeddingsRequest checks the body (unknown fields pass through). */

export class EmbeddingsRequestDoc {
  @ApiProperty({
    example: 'text-embedding-3-small',
    description: 'A model name or alias from GET /v1/models',
  })
  model: string;
  @ApiProperty({
    oneOf: [
      { type: 'string' },
      { type: 'array', items: { type: 'string' } },
      { type: 'array', items: { type: 'integer' } },
      { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
    ],
    example: ['The food was delicious', 'The waiter was friendly'],
    description: 'A text, up to 2048 texts, token ids, or arrays of token ids',
  })
  input: unknown;
  @ApiPropertyOptional({
    enum: ['float', 'base64'],
    default: 'float',
    description: 'base64: little-endian float32 (what the OpenAI SDKs ask for)',
  })
  encoding_format?: string;
  @ApiPropertyOptional({ minimum: 1, description: 'Size of the vectors (models that support it)' })
  dimensions?: number;
  @ApiPropertyOptional() user?: string;
}

export class EmbeddingDoc {
  @ApiProperty({ example: 'embedding' }) object: string;
  @ApiProperty() index: number;
  @ApiProperty({
    oneOf: [{ type: 'array', items: { type: 'number' } }, { type: 'string' }],
    example: [0.0023, -0.0093, 0.0151],
  })
  embedding: unknown;
}

export class EmbeddingsUsageDoc {
  @ApiProperty() prompt_tokens: number;
  @ApiProperty() total_tokens: number;
}

export class EmbeddingsResponseDoc {
  @ApiProperty({ example: 'list' }) object: string;
  @ApiProperty({ type: [EmbeddingDoc] }) data: EmbeddingDoc[];
  @ApiProperty() model: string;
  @ApiProperty({ type: EmbeddingsUsageDoc }) usage: EmbeddingsUsageDoc;
}
