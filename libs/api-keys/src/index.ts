export { ApiKeysModule } from './api-keys.module';
export { ApiKey } from './api-key.entity';
export { ApiKeysService } from './api-keys.service';
export { ApiKeysRepository } from './api-keys.repository';
export { LegacyKeysService } from './legacy-keys.service';
export type {
  BackfillReportVisitor,
  IgnoredPermissionsView,
  KeyOwner,
  LegacyKeyView,
  OwnerlessKeyView,
} from './legacy-keys.service';
export { KeyAuthService } from './key-auth.service';
export { ApiKeyGuard } from './api-key.guard';
export { clientAddress, KeyAdmission, missingApiKey, presentedKey } from './key-admission';
export type { KeyRequest } from './key-admission';
export { ApiKeyAuthenticated, CurrentKey } from './api-key.decorators';
export { KeyCache, UNSUBSCRIBED_LRU_MS } from './key-cache';
export { LastUsedTracker } from './last-used';
export * from './key-format';
export type { KeyPrincipal, LimitSpec, QuotaPeriod } from './key-principal';
export { ApiKeyResponse, ApiKeyCreatedResponse, CreateApiKeyDto, UpdateApiKeyDto } from './dto/api-key.dto';
export { KEY_SCOPES, KeyScopeGuard, assertScope, RequireScope, isKeyScope, scopesOf } from './scopes';
export type { KeyScope } from './scopes';
