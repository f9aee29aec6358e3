import { applyDecorators, HttpCode } from '@nestjs/common';
import {
  ApiBadGatewayResponse,
  ApiBadRequestResponse,
  ApiGatewayTimeoutResponse,
  ApiNotFoundResponse,
  ApiServiceUnavailableResponse,
  ApiTooManyRequestsResponse,
} from '@nestjs/swagger';

/**
 * What every metered endpoint (chat, embeddings, responses) may answer besides 200: the
 * ExchangeRunner's refusals and upstream failures, documented once. `badRequest` names the
 * route's own 400s.
 */
export const MeteredRoute = (badRequest: string) =>
  applyDecorators(
    HttpCode(200),
    ApiBadRequestResponse({ description: badRequest }),
    ApiNotFoundResponse({ description: 'Unknown model (model_not_found)' }),
    ApiGatewayTimeoutResponse({ description: 'The upstream did not answer in time (502: it failed)' }),
    ApiBadGatewayResponse({ description: 'Every upstream of the model failed' }),
    ApiTooManyRequestsResponse({
      description:
        'Token quota or budget of the key, user or tenant exceeded (insufficient_quota), the key rate limit reached, ' +
        'or too many failed key attempts; Retry-After and x-ratelimit-* headers say when to retry',
    }),
    ApiServiceUnavailableResponse({
      description: 'The quota store cannot be reached (QUOTA_FAIL_MODE=closed) or the usage ledger is full',
    }),
  );
