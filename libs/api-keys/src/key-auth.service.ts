import { Injectable, Logger, OnModuleInit, OnModuleDestroy, Optional } from '@nestjs/common';
import { BcryptGate } from '@app/auth';
import {
  ApiError,
  AUTH_PATHS,
  AuthPath,
  MetricsService,
  RefusalReason,
  RefusalTally,
} from '@app/observability';
import { ApiKeysRepository, KeyAuthRow } from './api-keys.repository';
import { AuthFailureLimiter } from './auth-failures';
import { KeyAuthEntry, KeyCache } from './key-cache';
import { displayPrefix, hasValidChecksum, isCurrentFormat, lookupHash } from './key-format';
import type { KeyPrincipal, LimitSpec, QuotaPeriod } from './key-principal';
import { scopesOf } from './scopes';

const num = (v: string | null | undefined): number | null =>
  v === null || v === undefined ? null : Number(v);
const period = (v: string | null | undefined): QuotaPeriod => (v === 'daily' || v === 'monthly' ? v : 'none');
const limit = (
  q: string | null,
  b: string | null,
  p: string | null,
  tpm: number | null | undefined,
): LimitSpec => ({
  tokenLimit: num(q),
  budgetUsd: num(b),
  period: period(p),
  rateLimitTpm: tpm ?? null,
});

const invalidKey = () => ApiError.unauthorized('Invalid API key', 'invalid_api_key');

export function entryFromRow(row: KeyAuthRow): KeyAuthEntry {
  const principal: KeyPrincipal = {
    kind: 'api-key',
    tenantId: row.tenant_id,
    userId: row.user_id,
    apiKeyId: row.id,
    keyName: row.name,
    keyPrefix: row.key_prefix,
    allowedModels: row.allowed_models,
    rateLimitRpm: row.rate_limit_rpm,
    scopes: scopesOf(row.permissions).scopes,
    limits: {
      tenant: limit(row.t_quota_limit, row.t_max_budget, row.t_quota_period, row.t_rate_limit_tpm),
      user: row.user_id
        ? limit(row.u_quota_limit, row.u_max_budget, row.u_quota_period, row.u_rate_limit_tpm)
        : null,
      key: limit(row.quota_limit, row.max_budget, row.quota_period, row.rate_limit_tpm),
    },
  };
  const ends = [row.expires_at, row.is_current ? null : (row.previous_expires_at ?? new Date(0))]
    .filter((d): d is Date => !!d)
    .map((d) => new Date(d).getTime());
  return {
    principal,
    validUntil: ends.length ? Math.min(...ends) : null,
    revoked: !!row.revoked_at,
    tenantActive: row.tenant_status === 'active',
    userActive: row.user_id === null || row.user_status === 'active',
  };
}

/**
 * Key authentication (design section 2, step 1): checksum -> LRU -> Redis -> PostgreSQL by
 * the unique lookup-hash index -> legacy bcrypt fallback narrowed by prefix, which
 * writes the lookup hash so each legacy key pays bcrypt once. Only the last two steps cost
 * anything, and only they pass the failure limiter (counted before the work); the legacy
 * fallback is single-flight per key and its compares wait for a BcryptGate slot.
 */
@Injectable()
export class KeyAuthService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('KeyAuth');
  private readonly counts = Object.fromEntries(AUTH_PATHS.map((p) => [p, 0])) as Record<AuthPath, number>;
  /** Prefixes of keys still without a lookup hash: a current-format key with a bad checksum may be one of them. */
  private legacyPrefixes = new Set<string>();
  private refreshTimer?: NodeJS.Timeout;
  /** Cache-missing lookups in flight by lookup hash: concurrent identical attempts share one. */
  private readonly lookupInFlight = new Map<string, Promise<KeyAuthEntry | undefined>>();
  /** Legacy fallbacks in flight by lookup hash: concurrent identical attempts share one. */
  private readonly legacyInFlight = new Map<string, Promise<KeyAuthEntry | undefined>>();

  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly cache: KeyCache,
    private readonly metrics: MetricsService,
    private readonly limiter: AuthFailureLimiter,
    private readonly gate: BcryptGate,
    @Optional() private readonly refusals?: RefusalTally,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.refreshLegacyPrefixes();
    this.refreshTimer = setInterval(() => void this.refreshLegacyPrefixes(), 60_000).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.refreshTimer);
  }

  async refreshLegacyPrefixes(): Promise<void> {
    try {
      this.legacyPrefixes = new Set(await this.keys.legacyPrefixes());
    } catch (e) {
      this.logger.warn(`could not load legacy key prefixes: ${(e as Error).message}`);
    }
  }

  /** Counters per auth path since start (also exported as Prometheus metrics). */
  get pathCounts(): Readonly<Record<AuthPath, number>> {
    return this.counts;
  }

  private hit(path: AuthPath): void {
    this.counts[path]++;
    this.metrics.authPath(path);
  }

  private invalid(path: AuthPath): ApiError {
    this.hit(path);
    return invalidKey();
  }

  /** `client`: the caller's address (the failure limiter counts per address and key prefix). */
  async authenticate(key: string, client = 'local'): Promise<KeyPrincipal> {
    if (typeof key !== 'string' || key.length < 8 || key.length > 256 || /[^\x21-\x7e]/.test(key)) {
      throw this.invalid('format_reject');
    }
    // Refused offline: no cache, database or bcrypt work (unless a legacy key could have this shape).
    if (isCurrentFormat(key) && !hasValidChecksum(key) && !this.legacyPrefixes.has(displayPrefix(key))) {
      throw this.invalid('format_reject');
    }
    const hash = lookupHash(key);
    if (this.cache.isNegative(hash)) throw this.invalid('negative_hit');

    let entry = this.cache.getLocal(hash);
    if (entry) this.hit('lru_hit');
    if (!entry) {
      entry = await this.cache.getShared(hash);
      if (entry) this.hit('redis_hit');
    }
    if (!entry) {
      // Concurrent attempts with the same key share one lookup (one limiter point, one query):
      // a burst of a valid key's first requests is not refused as a burst of failures.
      const running = this.lookupInFlight.get(hash);
      if (running) {
        this.hit('coalesced');
        entry = await running;
        if (!entry) throw invalidKey(); // counted once, as coalesced
      } else {
        const work = this.lookup(key, hash, client).finally(() => this.lookupInFlight.delete(hash));
        this.lookupInFlight.set(hash, work);
        entry = await work;
        if (!entry) throw this.invalid('rejected');
      }
    }
    return this.admit(entry);
  }

  /** The costly part: counted by the limiter before the work, the point given back when the key is found. */
  private async lookup(key: string, hash: string, client: string): Promise<KeyAuthEntry | undefined> {
    const ticket = this.limiter.beginLookup(client, displayPrefix(key));
    let entry: KeyAuthEntry | undefined;
    const row = await this.keys.findAuthRowByLookupHash(hash);
    if (row) {
      this.hit('db_hit');
      entry = entryFromRow(row);
    } else {
      entry = await this.legacyFallback(key, hash);
    }
    if (!entry) {
      this.cache.setNegative(hash);
      return undefined;
    }
    this.limiter.lookupSucceeded(ticket);
    await this.cache.set(hash, entry);
    return entry;
  }

  /** Single-flight per key: N concurrent attempts with the same key run one fallback. */
  private legacyFallback(key: string, hash: string): Promise<KeyAuthEntry | undefined> {
    const running = this.legacyInFlight.get(hash);
    if (running) return running;
    const work = this.runLegacyFallback(key, hash).finally(() => this.legacyInFlight.delete(hash));
    this.legacyInFlight.set(hash, work);
    return work;
  }

  private async runLegacyFallback(key: string, hash: string): Promise<KeyAuthEntry | undefined> {
    const prefix = displayPrefix(key);
    const candidates = await this.keys.findLegacyCandidates(prefix);
    if (!candidates.length) return undefined;
    this.limiter.beginLegacy(prefix);
    for (const c of candidates) {
      if (!(await this.gate.compare('legacy_key', key, c.key_hash))) continue;
      this.limiter.legacySucceeded(prefix);
      this.hit('legacy_fallback');
      if (await this.keys.setLookupHash(c.id, hash)) {
        this.hit('legacy_upgraded');
        this.logger.log(`legacy key ${c.id} upgraded: lookup hash written on first use`);
      }
      const row = await this.keys.findAuthRowByLookupHash(hash);
      return row ? entryFromRow(row) : undefined;
    }
    return undefined;
  }

  /** A known key refused: counted for its tenant's usage page (refusals by reason). */
  private admit(entry: KeyAuthEntry): KeyPrincipal {
    const refuse = (message: string, code: string, reason: RefusalReason) => {
      this.hit('rejected');
      this.refusals?.count(entry.principal.tenantId, reason);
      return ApiError.unauthorized(message, code);
    };
    if (entry.revoked) throw refuse('This API key has been revoked', 'key_revoked', 'key_revoked');
    if (entry.validUntil !== null && entry.validUntil <= Date.now())
      throw refuse('This API key has expired', 'key_expired', 'key_expired');
    if (!entry.tenantActive)
      throw refuse("This API key's tenant is disabled", 'tenant_disabled', 'owner_disabled');
    if (!entry.userActive)
      throw refuse("This API key's owner is disabled", 'user_disabled', 'owner_disabled');
    return entry.principal;
  }
}
