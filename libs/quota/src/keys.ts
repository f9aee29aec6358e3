import { periodWindow, type PeriodWindow } from './periods';
import type { QuotaLevel, QuotaLimits, QuotaPeriod, QuotaSubject } from './quota.types';

/**
 * Redis key names (docs: README "Quotas"). Every key of a tenant carries the hash tag
 * `{tenantId}`, so one script touches one Redis Cluster slot.
 *
 *   quota:{T}                 tokens, tenant level        spend:{T}                 micro-dollars
 *   quota:{T}:U               tokens, user level          spend:{T}:U
 *   quota:{T}:key:K           tokens, key level           spend:{T}:key:K
 *   ...:2026-11-22 / ...:2026-11   the bucket of a daily / monthly reset period
 *   rpm:{T}:K                 sorted set, the key's requests of the last minute
 *   tpm:{T} / tpm:{T}:user:U / tpm:{T}:key:K   sorted set of reservations of the last minute
 *                             (a level's tokens-per-minute window); `...:t` hash: their tokens, `_` the sum
 *   qresv:{T} / qresv:{T}:exp hash of open reservations / their expiries (sorted set)
 *   qdone:{T}                 sorted set: reservations settled or released lately (id -> until)
 *   ledger:{T}                stream: usage rows on their way to PostgreSQL (group `ledger`)
 *   ledger-streams            set of tenant ids whose stream may hold rows (single-key commands only)
 *
 * A key's counters are named by what never changes (tenant and key), not by its owner: a
 * key moved to another user (`keys:assign-owner`, PATCH user_id) keeps its counts, and the
 * new owner's user level counts its usage from then on. A legacy key without an owner has
 * no user level. Counters are plain integers: `redis-cli GET 'quota:{T}:key:K'` shows the
 * figure.
 *
 * LAYOUT names the key layout in the markers: a Redis holding counters of an older layout
 * (key counters named by owner, before issue 12) has no marker of this one, so every tenant
 * is rebuilt from the ledger under the new names before it is admitted again.
 */
const LAYOUT = 'v2';
const ID = /^[A-Za-z0-9_-]{1,64}$/;

function checkId(what: string, id: string): string {
  // A `{`, `}` or `:` would break the hash tag or the key layout.
  if (!ID.test(id)) throw new Error(`invalid ${what} id for a quota key`);
  return id;
}

export const NO_USER = '-';
export const MARKER_KEY = `quota-meta:rebuilt:${LAYOUT}`;

/**
 * Set by a rebuild of the tenant's counters (in the tenant's slot). Admission requires it:
 * a store that lost it (Redis restarted empty or flushed) must not count from 0.
 */
export function tenantMarkerKey(tenantId: string): string {
  return `quota-meta:{${checkId('tenant', tenantId)}}:rebuilt:${LAYOUT}`;
}

export interface LevelRef {
  level: QuotaLevel;
  /** Tenant, user or key id of this level. */
  id: string;
  tokensKey: string;
  spendKey: string;
  period: QuotaPeriod;
  /** Epoch ms after which the counter may be dropped (period end + grace); null = never. */
  expireAt: number | null;
}

/** Counters of a reset period live one more period after it ended (for the usage API), then expire. */
export const PERIOD_GRACE_MS = 35 * 24 * 3600 * 1000;

function base(level: QuotaLevel, tenantId: string, userId: string | null, apiKeyId: string): string {
  const t = `{${checkId('tenant', tenantId)}}`;
  if (level === 'tenant') return t;
  if (level === 'user') return `${t}:${userId === null ? NO_USER : checkId('user', userId)}`;
  // not the owner: a key keeps its counters when it changes hands
  return `${t}:key:${checkId('key', apiKeyId)}`;
}

export function levelRef(
  level: QuotaLevel,
  ids: { tenantId: string; userId: string | null; apiKeyId: string },
  limits: Pick<QuotaLimits, 'period'>,
  now: number,
  timeZone: string,
  /** The period's window at `now`, when the caller has it (a rebuild of many owners). */
  w: PeriodWindow = periodWindow(limits.period, now, timeZone),
): LevelRef {
  const b = base(level, ids.tenantId, ids.userId, ids.apiKeyId);
  const suffix = w.suffix ? `:${w.suffix}` : '';
  const id = level === 'tenant' ? ids.tenantId : level === 'user' ? (ids.userId ?? NO_USER) : ids.apiKeyId;
  return {
    level,
    id,
    tokensKey: `quota:${b}${suffix}`,
    spendKey: `spend:${b}${suffix}`,
    period: limits.period,
    expireAt: w.end === null ? null : w.end + PERIOD_GRACE_MS,
  };
}

/** The subject's levels, narrowest first (key, user, tenant): a refusal names the narrowest. */
export function subjectLevels(subject: QuotaSubject, now: number, timeZone: string): LevelRef[] {
  const refs = [levelRef('key', subject, subject.limits.key, now, timeZone)];
  if (subject.userId !== null)
    refs.push(levelRef('user', subject, subject.limits.user ?? { period: 'none' }, now, timeZone));
  refs.push(levelRef('tenant', subject, subject.limits.tenant, now, timeZone));
  return refs;
}

/** A level's tokens-per-minute window (sorted set; `${key}:t` its hash of tokens). */
export function tpmKey(level: QuotaLevel, tenantId: string, id: string): string {
  const t = `{${checkId('tenant', tenantId)}}`;
  return level === 'tenant' ? `tpm:${t}` : `tpm:${t}:${level}:${checkId(level, id)}`;
}
export const rpmKey = (tenantId: string, apiKeyId: string) =>
  `rpm:{${checkId('tenant', tenantId)}}:${checkId('key', apiKeyId)}`;
export const reservationsKey = (tenantId: string) => `qresv:{${checkId('tenant', tenantId)}}`;
export const expiriesKey = (tenantId: string) => `qresv:{${checkId('tenant', tenantId)}}:exp`;
export const settledKey = (tenantId: string) => `qdone:{${checkId('tenant', tenantId)}}`;
/** The tenant's ledger stream: the settle script appends the usage row in the same atomic step. */
export const ledgerStreamKey = (tenantId: string) => `ledger:{${checkId('tenant', tenantId)}}`;
/** Discovery set of tenants with a ledger stream (global key: single-key commands only, Cluster-safe). */
export const LEDGER_STREAMS_KEY = 'ledger-streams';
