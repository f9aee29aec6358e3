import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { ApiKey } from './api-key.entity';

/** One row of the auth lookup: the key with its tenant's and owner's state and limits. */
export interface KeyAuthRow {
  id: string;
  tenant_id: string;
  user_id: string | null;
  name: string;
  key_prefix: string;
  quota_limit: string | null;
  max_budget: string | null;
  quota_period: string;
  rate_limit_rpm: number | null;
  rate_limit_tpm: number | null;
  allowed_models: string[] | null;
  permissions: unknown;
  expires_at: Date | null;
  revoked_at: Date | null;
  /** false when matched through previous_lookup_hash (regenerated, in its grace period). */
  is_current: boolean;
  previous_expires_at: Date | null;
  tenant_status: string;
  t_quota_limit: string | null;
  t_max_budget: string | null;
  t_quota_period: string | null;
  t_rate_limit_tpm: number | null;
  user_status: string | null;
  u_quota_limit: string | null;
  u_max_budget: string | null;
  u_quota_period: string | null;
  u_rate_limit_tpm: number | null;
}

const AUTH_COLUMNS = `
  k.id, k.tenant_id, k.user_id, k.name, k.key_prefix, k.quota_limit, k.max_budget, k.quota_period,
  k.rate_limit_rpm, k.rate_limit_tpm, k.allowed_models, k.permissions, k.expires_at, k.revoked_at, k.previous_expires_at,
  t.status AS tenant_status, t.quota_limit AS t_quota_limit, t.max_budget AS t_max_budget, t.quota_period AS t_quota_period,
  t.rate_limit_tpm AS t_rate_limit_tpm,
  u.status AS user_status, u.quota_limit AS u_quota_limit, u.max_budget AS u_max_budget, u.quota_period AS u_quota_period,
  u.rate_limit_tpm AS u_rate_limit_tpm`;

/** One row of the backfill report: display columns only, never a hash. */
export interface LegacyKeyRow {
  id: string;
  name: string;
  key_prefix: string;
  user_id: string | null;
  tenant_id: string;
  tenant_name: string;
  last_used_at: Date | null;
  created_at: Date;
}

/** A key whose permissions hold names that are not endpoint scopes. */
export interface IgnoredPermissionsRow {
  id: string;
  name: string;
  key_prefix: string;
  tenant_id: string;
  tenant_name: string;
  permissions: unknown;
}

/** A key without an owner, with the counters assign-owner resets. */
export interface OwnerlessKeyRow {
  id: string;
  name: string;
  key_prefix: string;
  legacy: boolean;
  current_quota_usage: string;
  spend: string;
  created_at: Date;
}

/** A key assign-owner changed: the counters it had, and its hashes (for cache eviction). */
export interface AssignedKeyRow extends OwnerlessKeyRow {
  key_lookup_hash: string | null;
  previous_lookup_hash: string | null;
}

export interface KeyListFilter {
  /** Members see only their own keys. */
  ownerId?: string;
}

/**
 * All SQL of api_keys. Admin methods take the tenant first. The three auth-path methods
 * (by lookup hash, legacy candidates by prefix, upgrade) are necessarily unscoped: they
 * run before the tenant is known, and each is one indexed query.
 */
@Injectable()
export class ApiKeysRepository {
  constructor(
    @InjectRepository(ApiKey) private readonly repo: Repository<ApiKey>,
    private readonly db: DataSource,
  ) {}

  async findAuthRowByLookupHash(hash: string): Promise<KeyAuthRow | null> {
    const rows: KeyAuthRow[] = await this.db.query(
      `SELECT ${AUTH_COLUMNS}, (k.key_lookup_hash = $1) AS is_current
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id LEFT JOIN users u ON u.id = k.user_id
        WHERE k.key_lookup_hash = $1 OR k.previous_lookup_hash = $1
        LIMIT 1`,
      [hash],
    );
    return rows[0] ?? null;
  }

  /** Legacy fallback: rows still without a lookup hash whose prefix matches (partial index). */
  findLegacyCandidates(prefix: string): Promise<{ id: string; key_hash: string }[]> {
    return this.db.query(
      `SELECT id, key_hash FROM api_keys WHERE key_lookup_hash IS NULL AND key_prefix = $1 ORDER BY created_at LIMIT 20`,
      [prefix],
    );
  }

  /** The lazy upgrade: only if still NULL, so a concurrent upgrade or regenerate wins. */
  async setLookupHash(id: string, hash: string): Promise<boolean> {
    const [, affected] = (await this.db.query(
      `UPDATE api_keys SET key_lookup_hash = $2 WHERE id = $1 AND key_lookup_hash IS NULL`,
      [id, hash],
    )) as [unknown, number];
    return affected > 0;
  }

  async legacyPrefixes(): Promise<string[]> {
    const rows: { key_prefix: string }[] = await this.db.query(
      `SELECT DISTINCT key_prefix FROM api_keys WHERE key_lookup_hash IS NULL`,
    );
    return rows.map((r) => r.key_prefix);
  }

  /** Lookup hashes (current and previous) of matching keys: what caches must drop. */
  async lookupHashes(tenantId: string, where: { keyId?: string; userId?: string }): Promise<string[]> {
    const rows: { h: string | null; p: string | null }[] = await this.db.query(
      `SELECT key_lookup_hash AS h, previous_lookup_hash AS p FROM api_keys
        WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id = $2) AND ($3::uuid IS NULL OR user_id = $3)`,
      [tenantId, where.keyId ?? null, where.userId ?? null],
    );
    return rows.flatMap((r) => [r.h, r.p]).filter((h): h is string => !!h);
  }

  async touchLastUsed(entries: [id: string, at: Date][]): Promise<void> {
    if (!entries.length) return;
    await this.db.query(
      `UPDATE api_keys k SET last_used_at = v.at
         FROM (SELECT unnest($1::uuid[]) AS id, unnest($2::timestamptz[]) AS at) v
        WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)`,
      [entries.map((e) => e[0]), entries.map((e) => e[1].toISOString())],
    );
  }

  /** `manager` (here and below): inside the caller's transaction, which also writes the audit entry. */
  private r(manager?: EntityManager): Repository<ApiKey> {
    return manager?.getRepository(ApiKey) ?? this.repo;
  }

  private query(tenantId: string, filter: KeyListFilter = {}, manager?: EntityManager) {
    const qb = this.r(manager)
      .createQueryBuilder('k')
      .addSelect('k.key_lookup_hash IS NULL', 'k_legacy')
      .where('k.tenant_id = :tenantId', { tenantId });
    if (filter.ownerId) qb.andWhere('k.user_id = :ownerId', { ownerId: filter.ownerId });
    return qb;
  }

  private withLegacy(raw: { k_legacy: boolean }[], entities: ApiKey[]): ApiKey[] {
    entities.forEach((e, i) => (e.legacy = raw[i]?.k_legacy));
    return entities;
  }

  async findById(
    tenantId: string,
    id: string,
    filter: KeyListFilter = {},
    manager?: EntityManager,
  ): Promise<ApiKey | null> {
    const { raw, entities } = await this.query(tenantId, filter, manager)
      .andWhere('k.id = :id', { id })
      .getRawAndEntities();
    return this.withLegacy(raw, entities)[0] ?? null;
  }

  async list(
    tenantId: string,
    filter: KeyListFilter,
    offset: number,
    limit: number,
  ): Promise<[ApiKey[], number]> {
    const qb = this.query(tenantId, filter)
      .orderBy('k.created_at', 'DESC')
      .addOrderBy('k.id')
      .offset(offset)
      .limit(limit);
    const [{ raw, entities }, total] = await Promise.all([
      qb.getRawAndEntities(),
      this.query(tenantId, filter).getCount(),
    ]);
    return [this.withLegacy(raw, entities), total];
  }

  async insert(key: Partial<ApiKey> & { tenantId: string }, manager?: EntityManager): Promise<ApiKey> {
    const repo = this.r(manager);
    const saved = await repo.save(repo.create(key));
    return (await this.findById(key.tenantId, saved.id, {}, manager))!;
  }

  async update(tenantId: string, id: string, patch: Partial<ApiKey>, manager?: EntityManager): Promise<void> {
    await this.r(manager).update({ tenantId, id }, patch);
  }

  findWithLookupHash(tenantId: string, id: string): Promise<ApiKey | null> {
    return this.repo
      .createQueryBuilder('k')
      .addSelect('k.keyLookupHash')
      .where('k.tenant_id = :tenantId AND k.id = :id', { tenantId, id })
      .getOne();
  }

  lookupHashExists(hash: string): Promise<boolean> {
    return this.repo
      .createQueryBuilder('k')
      .where('k.key_lookup_hash = :hash OR k.previous_lookup_hash = :hash', { hash })
      .getExists();
  }

  /**
   * The backfill report's read (docs/cli.md): one READ ONLY, REPEATABLE READ transaction, so
   * the count and the rows come from one snapshot and the server refuses any write; the
   * rows come through a server-side cursor, `batchSize` at a time, so memory stays flat
   * however many keys wait. `tenantId` null = every tenant.
   */
  /**
   * Keys whose stored permissions hold names that are not endpoint scopes (legacy or
   * imported keys): how many, and the newest `limit` of them. Read only.
   */
  async findIgnoredPermissions(
    tenantId: string | null,
    scopes: readonly string[],
    limit: number,
  ): Promise<{ count: number; rows: IgnoredPermissionsRow[] }> {
    const where = `jsonb_typeof(k.permissions) = 'array'
        AND EXISTS (SELECT 1 FROM jsonb_array_elements(k.permissions) p
                     WHERE jsonb_typeof(p) <> 'string' OR NOT (p #>> '{}' = ANY($2::text[])))
        AND ($1::uuid IS NULL OR k.tenant_id = $1)`;
    const [[{ count }], rows] = (await Promise.all([
      this.db.query(`SELECT count(*)::int AS count FROM api_keys k WHERE ${where}`, [tenantId, scopes]),
      this.db.query(
        `SELECT k.id, k.name, k.key_prefix, k.tenant_id, t.name AS tenant_name, k.permissions
           FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
          WHERE ${where}
          ORDER BY k.created_at DESC, k.id LIMIT $3`,
        [tenantId, scopes, limit],
      ),
    ])) as [{ count: number }[], IgnoredPermissionsRow[]];
    return { count, rows };
  }

  async readLegacyKeys(
    tenantId: string | null,
    onCount: (count: number) => Promise<void> | void,
    onBatch: (rows: LegacyKeyRow[]) => Promise<void> | void,
    batchSize = 1000,
  ): Promise<void> {
    const fetch = Math.max(1, Math.floor(batchSize));
    const qr = this.db.createQueryRunner();
    await qr.connect();
    try {
      await qr.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      try {
        const [{ count }] = (await qr.query(
          `SELECT count(*)::int AS count FROM api_keys
            WHERE key_lookup_hash IS NULL AND ($1::uuid IS NULL OR tenant_id = $1)`,
          [tenantId],
        )) as { count: number }[];
        await onCount(count);
        await qr.query(
          `DECLARE legacy_keys NO SCROLL CURSOR FOR
           SELECT k.id, k.name, k.key_prefix, k.user_id, k.tenant_id, t.name AS tenant_name,
                  k.last_used_at, k.created_at
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
            WHERE k.key_lookup_hash IS NULL AND ($1::uuid IS NULL OR k.tenant_id = $1)
            ORDER BY k.created_at DESC, k.id`,
          [tenantId],
        );
        for (;;) {
          const rows = (await qr.query(`FETCH FORWARD ${fetch} FROM legacy_keys`)) as LegacyKeyRow[];
          if (rows.length) await onBatch(rows);
          if (rows.length < fetch) break;
        }
      } finally {
        // Nothing to commit; a broken connection must not hide the original error.
        await qr.query('ROLLBACK').catch(() => undefined);
      }
    } finally {
      await qr.release();
    }
  }

  /** Keys of the tenant without an owner (legacy rows from before owners existed). */
  findOwnerless(tenantId: string): Promise<OwnerlessKeyRow[]> {
    return this.db.query(
      `SELECT id, name, key_prefix, (key_lookup_hash IS NULL) AS legacy, current_quota_usage, spend, created_at
         FROM api_keys WHERE tenant_id = $1 AND user_id IS NULL
        ORDER BY created_at, id`,
      [tenantId],
    );
  }

  /**
   * The migration guide's update_api_keys script: every ownerless key of the tenant gets
   * this owner and its usage counters start at 0 (limits are kept). One statement, so all
   * or none; a key that got an owner meanwhile is left alone, and an owner from another
   * tenant matches nothing. Returns the changed keys with the counters they had.
   */
  async assignOwner(tenantId: string, userId: string): Promise<AssignedKeyRow[]> {
    const [rows] = (await this.db.query(
      `UPDATE api_keys k
          SET user_id = $2, current_quota_usage = 0, spend = 0, updated_at = now()
         FROM (SELECT id, current_quota_usage, spend FROM api_keys
                WHERE tenant_id = $1 AND user_id IS NULL FOR UPDATE) old
        WHERE k.id = old.id AND k.user_id IS NULL
          AND EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.tenant_id = $1)
        RETURNING k.id, k.name, k.key_prefix, (k.key_lookup_hash IS NULL) AS legacy,
                  old.current_quota_usage, old.spend, k.created_at,
                  k.key_lookup_hash, k.previous_lookup_hash`,
      [tenantId, userId],
    )) as [AssignedKeyRow[], number];
    return rows;
  }
}
