/** One usage_records row, as queued in memory (cost in integer micro-dollars). */
export interface LedgerRecord {
  /** Generated at settle time: a retried batch inserts each row once. */
  id: string;
  requestId: string | null;
  tenantId: string;
  userId: string | null;
  apiKeyId: string;
  model: string;
  provider: string;
  promptTokens: number;
  completionTokens: number;
  /** Of the prompt tokens: written to / read from the provider's prompt cache (absent: 0). */
  cacheWriteTokens?: number;
  cacheReadTokens?: number;
  costMicros: number;
  status: string;
  latencyMs: number | null;
  /** The deployment that answered (or failed last); null when unknown. */
  deployment: string | null;
  /** Upstream attempts (retries and fallovers included); 0 when none was tried. */
  attempts: number;
  /** When the request was admitted (same reset period as its counters). */
  createdAt: Date;
}

/** One line of the journal or one stream entry. */
export function serializeRecord(r: LedgerRecord): string {
  return JSON.stringify(r);
}

/** The inverse of serializeRecord; throws on anything that is not a whole record. */
export function parseRecord(text: string): LedgerRecord {
  const r = JSON.parse(text) as Omit<LedgerRecord, 'createdAt'> & { createdAt: string };
  const createdAt = new Date(r.createdAt);
  if (
    typeof r !== 'object' ||
    r === null ||
    typeof r.id !== 'string' ||
    typeof r.tenantId !== 'string' ||
    typeof r.apiKeyId !== 'string' ||
    !Number.isFinite(createdAt.getTime())
  )
    throw new Error('not a usage record');
  return { ...r, createdAt };
}
