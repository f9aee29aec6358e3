export { QuotaModule } from './quota.module';
export { GRANT_HEADER, QuotaService, RPM_WINDOW_MS, TPM_WINDOW_MS } from './quota.service';
export type { AdmitRequest, Admission, Reservation, Usage, RequestMeta } from './quota.service';
export type { QuotaLevel, QuotaLimits, QuotaPeriod, QuotaSubject } from './quota.types';
export { costMicros, usdToMicros, microsToUsd, microsToDecimal } from './pricing';
export type { ModelPricing } from './pricing';
export { QuotaClock, ManualClock } from './clock';
export { completionMicros, QuotaStore, SWEEP_LIMIT, TPM_RETRY_SCAN } from './store/quota-store';
export type {
  ReserveRequest,
  ReserveResult,
  ReserveLevel,
  CompletionAllowance,
  ReservationRef,
  SettleResult,
  SettleOptions,
  ReleaseResult,
  LevelUsage,
  RpmState,
  TpmState,
  TpmWindow,
  RebuildEntry,
  RebuildChange,
  RebuildOptions,
} from './store/quota-store';
export { RedisQuotaStore } from './store/redis-quota.store';
export { MemoryQuotaStore } from './store/memory-quota.store';
export { CounterOwnership, SplitBrainError } from './store/counter-ownership';
export { FailoverWatcher, FAILOVER_POLL_MS, keySlot } from './store/failover-watcher';
export { LedgerService } from './ledger/ledger.service';
export { LedgerRepository } from './ledger/ledger.repository';
export { LedgerStreamService, LEDGER_GROUP } from './ledger/ledger-stream.service';
export type { LedgerRecord } from './ledger/ledger-record';
export { UsageRecord } from './ledger/usage-record.entity';
export { ReconciliationService } from './reconciliation.service';
export type { RebuildReport, CounterChange } from './reconciliation.service';
export { UsageService } from './usage/usage.service';
export {
  levelRef,
  subjectLevels,
  rpmKey,
  tpmKey,
  MARKER_KEY,
  tenantMarkerKey,
  ledgerStreamKey,
  settledKey,
  LEDGER_STREAMS_KEY,
} from './keys';
export type { LevelRef } from './keys';
export { periodWindow, localDay } from './periods';
export type { PeriodWindow } from './periods';
export { formatDuration, rateLimitHeaders, UNLIMITED } from './headers';
export { RefusalCount } from './refusals/refusal-count.entity';
export { RefusalFlusher } from './refusals/refusal-flusher.service';
export { usageCsv } from './usage/usage-csv';
export { GROUP_BY, SPLIT_BY, UsageQuery } from './dto/usage.dto';
export type { UsageReportResponse, UsageRow } from './dto/usage.dto';
