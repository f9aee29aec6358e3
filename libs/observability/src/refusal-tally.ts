import { Injectable } from '@nestjs/common';

/**
 * Why the gateway refused a tenant's request (README "Usage API", refusals by reason). An
 * upstream's error is not one: only the gateway's own limits and key checks are.
 */
export const REFUSAL_REASONS = [
  'token_quota',
  'budget',
  'rpm',
  'tpm',
  'model_not_allowed',
  'key_expired',
  'key_revoked',
  'owner_disabled',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Refusals of one tenant in one minute (epoch minutes) for one reason. */
export interface RefusalTallyEntry {
  tenantId: string;
  minute: number;
  reason: RefusalReason;
  count: number;
}

/** More distinct (tenant, minute, reason) entries than this between two flushes are dropped (and counted). */
export const MAX_TALLY_ENTRIES = 50_000;

/**
 * Refusals counted in memory where they happen (the services that refuse: key auth, quota
 * admission), so every request path counts them; the quota lib drains the tally in batches
 * into PostgreSQL (RefusalFlusher), never on the request's path. A count is a Map update.
 */
@Injectable()
export class RefusalTally {
  private entries = new Map<string, RefusalTallyEntry>();
  private droppedCount = 0;

  count(tenantId: string, reason: RefusalReason, now = Date.now()): void {
    const minute = Math.floor(now / 60_000);
    const k = `${tenantId} ${minute} ${reason}`;
    const e = this.entries.get(k);
    if (e) e.count++;
    else if (this.entries.size < MAX_TALLY_ENTRIES)
      this.entries.set(k, { tenantId, minute, reason, count: 1 });
    else this.droppedCount++;
  }

  /** Refusals not counted since start (the tally was full). */
  get dropped(): number {
    return this.droppedCount;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Everything counted since the last drain; the tally starts empty again. */
  drain(): RefusalTallyEntry[] {
    const out = [...this.entries.values()];
    this.entries = new Map();
    return out;
  }

  /** Gives back what a failed write drained, so the next flush writes it. */
  restore(entries: RefusalTallyEntry[]): void {
    for (const e of entries) {
      const k = `${e.tenantId} ${e.minute} ${e.reason}`;
      const have = this.entries.get(k);
      if (have) have.count += e.count;
      else if (this.entries.size < MAX_TALLY_ENTRIES) this.entries.set(k, { ...e });
      else this.droppedCount += e.count;
    }
  }
}
