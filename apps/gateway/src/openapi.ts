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

type Schema = { $ref?: string; properties?: Record<string, { example?: unknown }> };

/**
 * The example Swagger UI shows and "Try it out" posts for a request body: the body schema's
 * properties that carry an example, and only those. Without it Swagger UI fills every
 * property with a placeholder ("string", a made-up uuid), and a create-key request then
 * posts `"key": "string"` and `"user_id": "3fa85f64-..."` and fails with 400 or 404.
 * test/admin/openapi.e2e-spec.ts posts every example as it is.
 */
function requestExample(doc: OpenAPIObject, schema: Schema | undefined): object | undefined {
  const name = schema?.$ref?.split('/').pop();
  const props = (name ? (doc.components?.schemas?.[name] as Schema) : schema)?.properties ?? {};
  const example = Object.fromEntries(
    Object.entries(props)
      .filter(([, p]) => p.example !== undefined)
      .map(([k, p]) => [k, p.example]),
  );
  return Object.keys(example).length ? example : undefined;
}

/**
 * Gives every declared error response (the controllers' `@ApiXxxResponse` decorators) the
 * error envelope's schema and an example, so no controller has to repeat it (responses the
 * decorators did not declare are not invented here), and every JSON request body an example
 * that succeeds as it is (`requestExample`).
 */
export function completeOpenApi(doc: OpenAPIObject): OpenAPIObject {
  doc.components ??= {};
  doc.components.schemas ??= {};
  doc.components.schemas.ErrorResponse = ERROR_SCHEMA as never;
  for (const item of Object.values(doc.paths)) {
    for (const op of [item.get, item.post, item.put, item.patch, item.delete]) {
      const body = op?.requestBody && 'content' in op.requestBody ? op.requestBody.content : undefined;
      const json = body?.['application/json'];
      if (json && json.example === undefined && !json.examples)
        json.example = requestExample(doc, json.schema as Schema | undefined);
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
