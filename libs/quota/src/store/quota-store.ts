import type { LevelRef } from '../keys';
import type { QuotaLevel } from '../quota.types';

/** One level of a reservation: its counters and limits (null = unlimited). */
export interface ReserveLevel extends LevelRef {
  tokenLimit: number | null;
  spendLimitMicros: number | null;
}

export interface ReserveRequest {
  tenantId: string;
  reservationId: string;
  /** Epoch ms from the caller's clock. */
  now: number;
  /** The reservation is released by the next script that sees it expired. */
  ttlMs: number;
  /** The part that must fit whole (the prompt estimate), in tokens and micro-dollars. */
  tokens: number;
  costMicros: number;
  /**
   * The completion allowance, decided in the same atomic step: as many completion tokens
   * per choice as every level still has room for after `tokens`/`costMicros` (in tokens
   * and in spend), at most `wanted`. Refused when that is below min(wanted, min). The
   * reservation then holds tokens + choices x granted, and costMicros +
   * `completionMicros(choices x granted, microsPerToken)`. Absent: nothing granted.
   */
  completion?: CompletionAllowance;
  /** Checked in order; the first that would exceed is named in the refusal. */
  levels: ReserveLevel[];
  /** Sliding-log rate limit of the key; checked before the quota. */
  rpm?: { key: string; limit: number; windowMs: number };
  /**
   * Tokens-per-minute windows (of the key, user, tenant: those with a limit). Each counts the
   * tokens its reservations hold, admitted within the last `windowMs` (a settle corrects the
   * entry to the actual tokens, a release removes it). Each limits the grant like a token
   * quota, after the quota levels: refused (reason `tpm`) when the prompt alone does not fit
   * or the grant would be below min(wanted, min).
   */
  tpm?: TpmWindow[];
  /**
   * Refuse (reason `uninitialized`, nothing written) unless the tenant's counters were
   * rebuilt from the ledger since the store last lost them: its marker is set by
   * `rebuild(..., { markTenant: true })`. The in-process store starts empty on every start
   * and is rebuilt from the ledger (and the local journal) before the first admission.
   */
  requireInitialized?: boolean;
}

/** A tokens-per-minute window of one level. */
export interface TpmWindow {
  level: QuotaLevel;
  /** Sorted set of reservation ids by admission time; `${key}:t` holds their tokens and the sum (`_`). */
  key: string;
  limit: number;
  windowMs: number;
}

export interface TpmState {
  limit: number;
  /** Tokens held in the window, this request's included when admitted. */
  used: number;
  /** Until the oldest entry leaves the window (0 when empty). */
  resetMs: number;
}

export interface CompletionAllowance {
  /** Completion tokens wanted per choice. */
  wanted: number;
  /** Choices (OpenAI `n`): each may produce the grant. */
  choices: number;
  /** Output price in micro-dollars per token (= USD per million tokens); 0 = free. */
  microsPerToken: number;
  /** Refuse when the grant would be below min(wanted, min) (QUOTA_MIN_COMPLETION_TOKENS). */
  min: number;
}

/**
 * Micro-dollars reserved for `tokens` completion tokens: rounded to 1e-6 micro-dollar first
 * (float noise of prices like 0.15), then up. The Redis script computes the same figure
 * (`string.format('%.6f')`, then `math.ceil`). With the prompt's `costMicros(pricing, p, 0)`
 * it is never below the settle's `costMicros(pricing, p', c')` for p' <= p, c' <= tokens.
 */
export function completionMicros(tokens: number, microsPerToken: number): number {
  if (tokens <= 0 || microsPerToken <= 0) return 0;
  return Math.ceil(Number((tokens * microsPerToken).toFixed(6)));
}

/** Counter values of one level (reserved in-flight amounts included). */
export interface LevelUsage {
  tokens: number;
  spendMicros: number;
}

export interface RpmState {
  limit: number;
  /** Requests in the window, this one included when admitted. */
  count: number;
  /** Until the oldest request in the window leaves it (0 when empty). */
  resetMs: number;
}

export type ReserveResult =
  | {
      ok: true;
      usage: LevelUsage[];
      rpm: RpmState | null;
      /** Completion tokens granted per choice (0 without `completion`). */
      granted: number;
      /** What the reservation holds: tokens + choices x granted, and its cost. */
      tokens: number;
      costMicros: number;
      /** One per `tpm` window of the request, in order. */
      tpm: TpmState[];
    }
  | { ok: false; reason: 'uninitialized' }
  | { ok: false; reason: 'rpm'; rpm: RpmState }
  | {
      ok: false;
      reason: 'tpm';
      /** Index into `tpm` of the window that refused. */
      windowIndex: number;
      tpm: TpmState[];
      /**
       * Until enough tokens leave that window for the least this request needs, found among the
       * window's oldest TPM_RETRY_SCAN entries (past them: until the last of those leaves, a
       * lower bound); null: it never fits.
       */
      retryMs: number | null;
      usage: LevelUsage[];
      rpm: RpmState | null;
    }
  | {
      ok: false;
      reason: 'tokens' | 'budget';
      /**
       * Index into `levels` of the level that refused: the first where `tokens`/`costMicros`
       * alone do not fit, else the one that left the least completion room.
       */
      levelIndex: number;
      limit: number;
      /** Counter values before this request (nothing was written). */
      usage: LevelUsage[];
      rpm: RpmState | null;
    };

/** What settle and release need to find a reservation and its counters again. */
export interface ReservationRef {
  tenantId: string;
  reservationId: string;
  levels: LevelRef[];
  /** The reservation's tokens-per-minute window keys (`TpmWindow.key`). */
  tpm?: string[];
}

export interface SettleResult {
  /** true when the reservation had expired (or was lost): the actual amounts were added in full. */
  late: boolean;
  /** This reservation was already settled or released (a resent command): nothing was done again. */
  duplicate: boolean;
  usage: LevelUsage[];
}

/** What settle and release also do, atomically with the counter change. */
export interface SettleOptions {
  /**
   * The usage row (JSON of a LedgerRecord): a store with `carriesLedger` appends it to the
   * tenant's ledger stream in the same step; the in-process store ignores it.
   */
  row?: string;
  /** How long the "already settled" marker is kept (resends arrive within seconds). */
  markerTtlMs?: number;
}

/** Default lifetime of the "already settled or released" marker of a reservation. */
export const SETTLED_MARKER_MS = 120_000;

export type ReleaseResult = 'released' | 'expired' | 'duplicate';

export interface RebuildEntry {
  key: string;
  /** The figure from the ledger; open reservations on the key are added on top. */
  value: number;
  expireAt: number | null;
}

export interface RebuildOptions {
  /** Set the tenant's marker (the last call of a tenant's rebuild): admissions may count again. */
  markTenant?: boolean;
  /** Write nothing when the tenant's marker is already set (another instance rebuilt it first). */
  onlyIfUninitialized?: boolean;
  /** Write nothing when the tenant was rebuilt at or after this time (epoch ms, the marker's value). */
  unlessRebuiltSince?: number;
}

export interface RebuildChange {
  key: string;
  before: number;
  after: number;
}

/**
 * The quota counters' contract (DI token). Every operation is atomic: on Redis one Lua
 * script; in process, synchronous steps. Each operation first releases the tenant's
 * expired reservations (lazily, up to SWEEP_LIMIT per call).
 * The contract suite (test/quota/store-contract.ts) runs against both implementations.
 */
export abstract class QuotaStore {
  abstract readonly kind: 'redis' | 'memory';
  /** settle/release write the usage row atomically with the counters (Redis stream). */
  abstract readonly carriesLedger: boolean;

  /**
   * rpm check, then the allowance (see `ReserveRequest.completion`), then add tokens and cost
   * at every level, all or nothing. Idempotent per reservation id: a reserve whose
   * reservation is already held (a script run twice, e.g. resent by ioredis after a
   * reconnect) adds nothing and answers the grant it holds.
   */
  abstract reserve(req: ReserveRequest): Promise<ReserveResult>;

  /**
   * Replaces the reserved amounts by the actual ones (or adds them in full when the
   * reservation is gone). Exactly once per reservation id: a second settle or release of the
   * same id (within the marker's lifetime) changes nothing and reports `duplicate`.
   */
  abstract settle(
    ref: ReservationRef,
    tokens: number,
    costMicros: number,
    now: number,
    opts?: SettleOptions,
  ): Promise<SettleResult>;

  /** Gives the reserved amounts back, exactly once per reservation id (as settle). */
  abstract release(ref: ReservationRef, now: number, opts?: SettleOptions): Promise<ReleaseResult>;

  /**
   * Drops the tenant's marker: its admissions wait for a rebuild (QuotaService rebuilds it
   * on the next request, the periodic pass retries it), as after a store loss.
   */
  abstract unmarkTenant(tenantId: string): Promise<void>;

  /** When the tenant's counters were last rebuilt (its marker), or null when they must be. */
  abstract tenantRebuiltAt(tenantId: string): Promise<number | null>;

  /** Current values of counters (0 when absent), after sweeping expired reservations. */
  abstract read(tenantId: string, keys: string[], now: number): Promise<number[]>;

  /** Open reservations of a tenant (after sweeping). */
  abstract pending(tenantId: string, now: number): Promise<number>;

  /**
   * Sets counters to ledger figures plus open reservations, atomically per call (skipped
   * with `onlyIfUninitialized` when the tenant is marked: before = after = current).
   */
  abstract rebuild(
    tenantId: string,
    entries: RebuildEntry[],
    now: number,
    opts?: RebuildOptions,
  ): Promise<RebuildChange[]>;

  /** Resolves when the store can take commands, or after timeoutMs (start-up only). */
  waitReady(_timeoutMs: number): Promise<void> {
    return Promise.resolve();
  }

  /** The marker that counters were rebuilt since the store was last empty. */
  abstract isInitialized(): Promise<boolean>;
  abstract markInitialized(at: number): Promise<void>;
}

/** Expired reservations released per call, at most (the rest on the next calls). */
export const SWEEP_LIMIT = 1000;

/**
 * A tpm refusal's retry time reads at most this many of the window's oldest entries: a refusal
 * costs the same whatever the window holds (a key over its limit that keeps sending would
 * otherwise read its whole window, up to every request of the last 60 s, on every refusal).
 */
export const TPM_RETRY_SCAN = 256;
