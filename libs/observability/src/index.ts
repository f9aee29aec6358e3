export { ApiError, defaultErrorType } from './api-error';
export type { ErrorBody } from './api-error';
export { AllExceptionsFilter, toErrorResponse } from './all-exceptions.filter';
export { ObservabilityModule } from './observability.module';
export { ReadinessRegistry } from './readiness';
export type { ReadinessCheck } from './readiness';
export { REDACT_PATHS, requestIdFor, pinoParams, writeAccessLine } from './logging';
export type { AccessFields, LogDestination } from './logging';
export { MetricsService, AUTH_PATHS } from './metrics.service';
export type {
  AuthPath,
  AuthThrottleReason,
  LoginOutcome,
  QuotaLevel,
  QuotaRefusalType,
  UpstreamOutcome,
} from './metrics.service';
export { httpMetricsMiddleware, routePattern, trackHttpRequest } from './http-metrics.middleware';
export { GracefulShutdown, watchParent } from './graceful-shutdown';
export { TickBatch } from './tick-writes';
export { Slots } from './slots';
export { answerClientError, jsonBodyError, jsonBodyProblem, MAX_JSON_DEPTH } from './request-guards';
export type { GracefulShutdownOptions, ShutdownLogger } from './graceful-shutdown';
export { AUTH_METADATA, Public } from './access';
export { QuietStartLogger, startLogger } from './startup-logger';
export {
  AnthropicExceptionFilter,
  anthropicErrorType,
  anthropicRateLimitHeaders,
  isAnthropicPath,
  toAnthropicErrorBody,
} from './anthropic-error';
export type { AnthropicErrorBody } from './anthropic-error';
export { csvField } from './csv';
export { MAX_TALLY_ENTRIES, REFUSAL_REASONS, RefusalTally } from './refusal-tally';
export type { RefusalReason, RefusalTallyEntry } from './refusal-tally';
