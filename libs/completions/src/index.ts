export { CompletionsModule } from './completions.module';
export type { CompletionsModuleOptions } from './completions.module';
export { CompletionsService } from './completions.service';
export { MessagesService } from './messages/messages.service';
export { EmbeddingsService } from './embeddings/embeddings.service';
export { ResponsesService } from './responses/responses.service';
export { ExchangeRunner } from './exchange';
export { ProviderRegistry } from './providers/provider-registry';
export { UsageMeter, NoopUsageMeter } from './usage-meter';
export type { Admission, CompletionCaller, MeteredUsage, UsageEstimate, UsageMeta } from './usage-meter';
export { RoutingTable, Deployment, isModelAllowed, assertModelAllowed } from './routing/routing-table';
export type { Endpoint, ModelRoute, ProviderKind, Strategy } from './routing/routing-table';
export { ENDPOINTS } from './routing/routing-table';
export { loadRoutingTable, parseRoutingTable } from './routing/routing-loader';
export { DeploymentRouter } from './routing/deployment-router';
export type { RoutePlan } from './routing/deployment-router';
export {
  HealthStore,
  MemoryHealthStore,
  RedisHealthStore,
  afterFailure,
  afterRetryAfter,
  withProbe,
  stateOf,
} from './routing/deployment-health';
export type { HealthRecord, HealthPolicy, DeploymentState } from './routing/deployment-health';
export { costMicros } from './pricing';
export type { Pricing } from './pricing';
export { countTokens, countPromptTokens, countMessagesPromptTokens } from './tokens';
export { validateChatRequest } from './chat/chat-request';
export type * from './chat/openai-types';
export { ResponseOwner } from './responses/response-owner.entity';
