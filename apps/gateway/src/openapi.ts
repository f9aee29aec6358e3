import type { OpenAPIObject } from '@nestjs/swagger';
import { defaultErrorType } from '@app/observability';

/** The one error body of every route (libs/observability ApiError, AllExceptionsFilter). */
export const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'code'],
      properties: {
        message: { type: 'string', description: 'What went wrong, for people' },
        type: { type: 'string', description: 'OpenAI error type', example: 'invalid_request_error' },
        code: { type: 'string', nullable: true, description: 'Stable machine-readable code' },
        param: { type: 'string', nullable: true, description: 'The offending field, when there is one' },
        request_id: {
          type: 'string',
          description: 'Correlation id (also in the X-Request-Id header and the logs)',
        },
      },
    },
  },
} as const;

/** Example messages where a decorator gave no description. */
const GENERIC: Record<number, string> = {
  400: 'Invalid request',
  401: 'Missing credentials: send Authorization: Bearer <JWT or master key>',
  403: 'This needs the admin role',
  404: 'Not found',
  409: 'Conflict',
  429: 'Too many requests; retry after the Retry-After header',
  502: 'The upstream provider failed',
  503: 'Service unavailable',
  504: 'The upstream did not answer in time',
};

/**
 * Gives every declared error response (the controllers' `@ApiXxxResponse` decorators) the
 * error envelope's schema and an example, so no controller has to repeat it. Responses the
 * decorators did not declare are not invented here.
 */
export function completeOpenApi(doc: OpenAPIObject): OpenAPIObject {
  doc.components ??= {};
  doc.components.schemas ??= {};
  doc.components.schemas.ErrorResponse = ERROR_SCHEMA as never;
  for (const item of Object.values(doc.paths)) {
    for (const op of [item.get, item.post, item.put, item.patch, item.delete]) {
      for (const [code, response] of Object.entries(op?.responses ?? {})) {
        const status = Number(code);
        if (!(status >= 400) || !response || '$ref' in response || response.content) continue;
        const [type, code_] = defaultErrorType(status);
        const message = response.description || GENERIC[status] || 'Error';
        response.content = {
          'application/json': {
            schema: { $ref: '#/components/schemas/ErrorResponse' },
            example: {
              error: {
                message,
                type,
                code: code_,
                param: null,
                request_id: 'req_01JD4Z8X5K3V2N7Q9R6T1W0Y2M',
              },
            },
          },
        };
      }
    }
  }
  return doc;
}
