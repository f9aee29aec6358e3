import type Redis from 'ioredis';
import { costMicros } from '@app/completions';
import type { QuotaLevel, QuotaPeriod } from '@app/quota';
import type { Result } from './client';
import { counters, LedgerRow, PRICING } from './world';

/** A time window during which an injected fault explains some 5xx answers. */
export interface FaultWindow {
  name: string;
  from: number;
  to: number;
  /** (status, code) pairs this fault explains. */
  explains: { status: number; code: string }[];
}

/** Refusals before admission: no ledger row. Upstream failures after admission: a zero row (release). */
const ADMITTED_FAILURES = new Set([
  'upstream_error',
  'upstream_timeout',
  'bad_gateway',
  'upstream_unavailable',
]);

export function admitted(r: Result): boolean {
  return r.status === 200 || (r.status >= 500 && ADMITTED_FAILURES.has(r.code ?? ''));
}

export function explain(r: Result, faults: FaultWindow[]): string | null {
  for (const f of faults) {
    const overlaps = r.t0 <= f.to && r.tEnd >= f.from;
    if (overlaps && f.explains.some((e) => e.status === r.status && e.code === r.code)) return f.name;
  }
  return null;
}

export interface Tally {
  requests: number;
  ok: number;
  streamed: number;
  refused429: number;
  byCode: Record<string, number>;
  explained5xx: number;
  unexplained5xx: Result[];
  /** A 200 whose body was cut before its end. */
  cut: number;
  /** No response head: connection refused or reset, client timeout (by message). */
  noAnswer: Record<string, number>;
  other: Result[];
}

export function tally(results: Result[], faults: FaultWindow[] = []): Tally {
  const t: Tally = {
    requests: results.length,
    ok: 0,
    streamed: 0,
    refused429: 0,
    byCode: {},
    explained5xx: 0,
    unexplained5xx: [],
    cut: 0,
    noAnswer: {},
    other: [],
  };
  for (const r of results) {
    if (r.stream) t.streamed++;
    const key = `${r.status}${r.code ? ` ${r.code}` : r.sseError ? ` stream:${r.sseError}` : ''}`;
    t.byCode[key] = (t.byCode[key] ?? 0) + 1;
    if (r.status === 200 && r.complete) t.ok++;
    else if (r.status === 200) t.cut++;
    else if (r.status === 0)
      t.noAnswer[r.netError ?? 'closed'] = (t.noAnswer[r.netError ?? 'closed'] ?? 0) + 1;
    else if (r.status === 429) t.refused429++;
    else if (r.status >= 500) {
      if (explain(r, faults)) t.explained5xx++;
      else t.unexplained5xx.push(r);
    } else t.other.push(r);
  }
  return t;
}

export interface RowCheck {
  expected: number;
  found: number;
  lost: string[];
  duplicated: string[];
  /** Rows for requests that were refused before admission (must not exist). */
  phantom: string[];
}

/** Every admitted request has exactly one ledger row; refused ones have none. */
export function checkRows(results: Result[], rows: LedgerRow[], excused: Set<string> = new Set()): RowCheck {
  const count = new Map<string, number>();
  for (const r of rows) count.set(r.request_id, (count.get(r.request_id) ?? 0) + 1);
  const out: RowCheck = { expected: 0, found: 0, lost: [], duplicated: [], phantom: [] };
  for (const r of results) {
    const n = count.get(r.requestId) ?? 0;
    if (n > 1) out.duplicated.push(r.requestId);
    if (admitted(r)) {
      out.expected++;
      if (n > 0) out.found++;
      else if (!excused.has(r.requestId)) out.lost.push(r.requestId);
    } else if ((r.status === 429 || r.status === 503) && n > 0) out.phantom.push(r.requestId);
  }
  return out;
}

export interface Group {
  name: string;
  level: QuotaLevel;
  ids: { tenantId: string; userId: string | null; apiKeyId: string };
  period: QuotaPeriod;
  /** Token limit / budget in micro-dollars of this level (null = none). */
  tokenLimit: number | null;
  budgetMicros: number | null;
  /** max(0, actual - reserved) of each request of this group (tokens, micros). */
  excess: { tokens: number; micros: number };
}

export interface GroupFigures {
  name: string;
  limit: string;
  admitted: number;
  refused: number;
  usage: { tokens: number; micros: number };
  client: { tokens: number; micros: number };
  /**
   * Ledger rows of streams cut by a SIGKILL: the settle ran (the upstream had answered in
   * full) and the instance died before the last bytes reached the client. Charged, never told.
   */
  cutCharged: { tokens: number; micros: number };
  redis: { tokens: number; micros: number };
  overspend: number;
  bound: number;
  unit: 'tokens' | 'micro-USD';
}

const matches = (g: Group, tags: Record<string, string> | undefined) =>
  g.level === 'tenant'
    ? tags?.tenantId === g.ids.tenantId
    : g.level === 'user'
      ? tags?.userId === g.ids.userId
      : tags?.keyId === g.ids.apiKeyId;

const rowMatches = (g: Group, r: LedgerRow) =>
  g.level === 'tenant'
    ? r.tenant_id === g.ids.tenantId
    : g.level === 'user'
      ? r.user_id === g.ids.userId
      : r.api_key_id === g.ids.apiKeyId;

/**
 * The bound of QuotaService for this group: sum, over the requests in flight when the last
 * one was admitted, of max(0, actual - reserved). Admission times are the ledger rows'
 * created_at (the quota clock at admit); a request is taken as in flight until
 * created_at + latency_ms + 25 ms (its settle follows the latency measurement), which
 * can only make the bound larger.
 */
function boundOf(g: Group, rows: LedgerRow[], unit: 'tokens' | 'micros'): number {
  const per = g.excess[unit];
  if (per <= 0 || rows.length === 0) return 0;
  const last = Math.max(...rows.map((r) => r.created_ms));
  const inFlight = rows.filter(
    (r) => r.created_ms <= last + 1 && r.created_ms + r.latency_ms + 25 >= last,
  ).length;
  return inFlight * per;
}

export async function groupFigures(
  redis: Redis,
  g: Group,
  results: Result[],
  rows: LedgerRow[],
  /** Requests whose row died with a SIGKILLed instance: left out of the client sum. */
  excused: Set<string> = new Set(),
): Promise<GroupFigures> {
  const mine = results.filter((r) => matches(g, r.shot.tags) && !excused.has(r.requestId));
  const myRows = rows.filter((r) => rowMatches(g, r) && r.tokens > 0);
  const client = { tokens: 0, micros: 0 };
  for (const r of mine) {
    if (!r.usage) continue;
    client.tokens += r.usage.prompt + r.usage.completion;
    client.micros += costMicros(PRICING, r.usage.prompt, r.usage.completion);
  }
  const cutRows = myRows.filter((r) => excused.has(r.request_id));
  const cutCharged = {
    tokens: cutRows.reduce((s, r) => s + r.tokens, 0),
    micros: cutRows.reduce((s, r) => s + r.micros, 0),
  };
  const usage = {
    tokens: myRows.reduce((s, r) => s + r.tokens, 0),
    micros: myRows.reduce((s, r) => s + r.micros, 0),
  };
  const redisNow = await counters(redis, g.level, g.ids, g.period);
  const byBudget = g.budgetMicros !== null;
  const unit = byBudget ? 'micros' : 'tokens';
  const limit = byBudget ? g.budgetMicros! : (g.tokenLimit ?? Infinity);
  return {
    name: g.name,
    limit: byBudget
      ? `${g.budgetMicros} micro-USD`
      : g.tokenLimit === null
        ? 'none'
        : `${g.tokenLimit} tokens`,
    admitted: mine.filter((r) => r.status === 200).length,
    refused: mine.filter((r) => r.status === 429).length,
    usage,
    client,
    cutCharged,
    redis: redisNow,
    overspend: Math.max(0, usage[unit] - limit),
    bound: boundOf(g, myRows, unit),
    unit: byBudget ? 'micro-USD' : 'tokens',
  };
}
