import { Injectable, Optional } from '@nestjs/common';
import { Counter } from 'prom-client';
import { MetricsService, RefusalReason, RefusalTally } from '@app/observability';
import type { QuotaLevel } from './quota.types';

/**
 * The quota lib's metrics. Uses MetricsService's typed methods where they exist and
 * registers its own two counters on the same registry (store failures, dropped ledger
 * rows). Without MetricsService (unit tests) every call is a no-op.
 */
@Injectable()
export class QuotaMetrics {
  private readonly storeFailures?: Counter<'op' | 'mode'>;
  private readonly ledgerDropped?: Counter<'reason'>;

  constructor(
    @Optional() private readonly metrics?: MetricsService,
    @Optional() private readonly tally?: RefusalTally,
  ) {
    if (!metrics) return;
    this.storeFailures = new Counter({
      name: 'gateway_quota_store_failures_total',
      help: 'Quota store (Redis) operations that failed, by operation and QUOTA_FAIL_MODE',
      labelNames: ['op', 'mode'] as const,
      registers: [metrics.registry],
    });
    this.ledgerDropped = new Counter({
      name: 'gateway_ledger_dropped_total',
      help: 'Usage records not written: queue full (LEDGER_MAX_QUEUE) or rejected by PostgreSQL (bad data)',
      labelNames: ['reason'] as const,
      registers: [metrics.registry],
    });
  }

  /** A request refused by a limit: the Prometheus counter, and the tenant's tally (usage page). */
  refusal(
    tenantId: string,
    level: QuotaLevel,
    type: 'tokens' | 'budget' | 'rate' | 'model',
    reason: RefusalReason,
  ): void {
    this.metrics?.quotaRefusal(level, type);
    this.tally?.count(tenantId, reason);
  }

  storeFailure(op: string, mode: string): void {
    this.storeFailures?.inc({ op, mode });
  }

  tokens(model: string, prompt: number, completion: number, usd: number): void {
    this.metrics?.tokens(model, prompt, completion, usd);
  }

  trackLedgerDepth(fn: () => number): void {
    this.metrics?.trackLedgerDepth(fn);
  }

  ledgerFlushFailure(): void {
    this.metrics?.ledgerFlushFailure();
  }

  ledgerDrop(reason: 'queue_full' | 'rejected'): void {
    this.ledgerDropped?.inc({ reason });
  }
}
