import { Module } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { RedisConnection } from '@app/database';
import { QuotaClock } from './clock';
import { LedgerRepository } from './ledger/ledger.repository';
import { LedgerStreamService } from './ledger/ledger-stream.service';
import { LedgerService } from './ledger/ledger.service';
import { assertTimeZone } from './periods';
import { QuotaMetrics } from './quota-metrics';
import { QuotaService } from './quota.service';
import { ReconciliationService } from './reconciliation.service';
import { RefusalFlusher } from './refusals/refusal-flusher.service';
import { RefusalsRepository } from './refusals/refusals.repository';
import { CounterOwnership } from './store/counter-ownership';
import { FailoverWatcher } from './store/failover-watcher';
import { MemoryQuotaStore } from './store/memory-quota.store';
import { QuotaStore } from './store/quota-store';
import { RedisQuotaStore } from './store/redis-quota.store';
import { TenantUsageController, UsageController } from './usage/usage.controller';
import { UsageRepository } from './usage/usage.repository';
import { UsageService } from './usage/usage.service';

/**
 * Quotas, budgets and rate limits (README "Quotas"). The store is Redis when one is
 * configured (single node, Sentinel or Cluster; shared by every instance), else in-process
 * (one instance only: CounterOwnership refuses a second one on the same database).
 */
@Module({
  controllers: [UsageController, TenantUsageController],
  providers: [
    { provide: QuotaClock, useClass: QuotaClock },
    {
      provide: QuotaStore,
      inject: [AppConfig, { token: RedisConnection, optional: true }],
      useFactory: (config: AppConfig, redis?: RedisConnection): QuotaStore => {
        assertTimeZone(config.QUOTA_TIMEZONE);
        return redis?.client
          ? new RedisQuotaStore(redis.client, { spinMs: config.QUOTA_WAIT_SPIN_MS })
          : new MemoryQuotaStore();
      },
    },
    QuotaMetrics,
    LedgerRepository,
    LedgerService,
    LedgerStreamService,
    UsageRepository,
    UsageService,
    ReconciliationService,
    QuotaService,
    CounterOwnership,
    FailoverWatcher,
    RefusalsRepository,
    RefusalFlusher,
  ],
  exports: [
    QuotaService,
    QuotaStore,
    QuotaClock,
    LedgerService,
    LedgerStreamService,
    ReconciliationService,
    UsageService,
    RefusalFlusher,
  ],
})
export class QuotaModule {}
