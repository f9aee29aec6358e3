export { ApiError, defaultErrorType } from './api-error';
export type { ErrorBody } from './api-error';
export { AllExceptionsFilter, toErrorResponse } from './all-exceptions.filter';
export { ObservabilityModule } from './observability.module';
export { ReadinessRegistry } from './readiness';
export type { ReadinessCheck } from './readiness';
export { REDACT_PATHS, requestIdFor, pinoParams } from './logging';
