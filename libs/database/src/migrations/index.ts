import { CreateTenantsAndUsers1732000000000 } from './1732000000000-CreateTenantsAndUsers';
import { CreateLegacyApiKeys1732000001000 } from './1732000001000-CreateLegacyApiKeys';
import { ApiKeyOwnersAndLimits1732000002000 } from './1732000002000-ApiKeyOwnersAndLimits';
import { ApiKeyLookupHash1732000003000 } from './1732000003000-ApiKeyLookupHash';
import { ApiKeyRotationGrace1732000003500 } from './1732000003500-ApiKeyRotationGrace';
import { TenantUserQuotas1732000004000 } from './1732000004000-TenantUserQuotas';
import { UsageRecords1732000005000 } from './1732000005000-UsageRecords';
import { AuditLog1795936489416 } from './1795936489416-AuditLog';
import { UserSessionsAndKeyDefaults1795936671948 } from './1795936671948-UserSessionsAndKeyDefaults';
import { ResponseOwners1795939086141 } from './1795939086141-ResponseOwners';
import { UsageRecordsDeploymentAttempts1795939582416 } from './1795939582416-UsageRecordsDeploymentAttempts';
import { UsageRecordCachedTokens1795941326306 } from './1795941326306-UsageRecordCachedTokens';
import { RateLimitTpm1795948597011 } from './1795948597011-RateLimitTpm';
import { RefusalCounts1795959353879 } from './1795959353879-RefusalCounts';

/**
 * Every migration, in order. The app and ormconfig.ts both use this list, so the
 * compiled gateway and the TypeORM CLI always agree.
 */
export const MIGRATIONS = [
  CreateTenantsAndUsers1732000000000,
  CreateLegacyApiKeys1732000001000,
  ApiKeyOwnersAndLimits1732000002000,
  ApiKeyLookupHash1732000003000,
  ApiKeyRotationGrace1732000003500,
  TenantUserQuotas1732000004000,
  UsageRecords1732000005000,
  AuditLog1795936489416,
  UserSessionsAndKeyDefaults1795936671948,
  ResponseOwners1795939086141,
  UsageRecordsDeploymentAttempts1795939582416,
  UsageRecordCachedTokens1795941326306,
  RateLimitTpm1795948597011,
  RefusalCounts1795959353879,
];
