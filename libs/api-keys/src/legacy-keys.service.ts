import { Injectable } from '@nestjs/common';
import { ApiError } from '@app/observability';
import { ApiKeysRepository, LegacyKeyRow, OwnerlessKeyRow } from './api-keys.repository';
import { KeyCache } from './key-cache';
import { KEY_SCOPES, scopesOf } from './scopes';

/** A key still without a lookup hash, as the backfill report shows it. */
export interface LegacyKeyView {
  id: string;
  name: string;
  key_prefix: string;
  user_id: string | null;
  tenant_id: string;
  tenant_name: string;
  last_used_at: string | null;
  created_at: string;
}

/** A key without an owner, with the counters assign-owner resets. */
export interface OwnerlessKeyView {
  id: string;
  name: string;
  key_prefix: string;
  /** No lookup hash yet either (upgrades on first use). */
  legacy: boolean;
  current_quota_usage: number;
  spend: number;
  created_at: string;
}

/** A key whose stored permissions hold names that are not endpoint scopes: they restrict nothing. */
export interface IgnoredPermissionsView {
  id: string;
  name: string;
  key_prefix: string;
  tenant_name: string;
  permissions: unknown;
  /** The stored names that are not scopes. */
  ignored: string[];
  /** What the key may call: its scopes, or null = every endpoint. */
  scopes: string[] | null;
}

export interface BackfillReportVisitor {
  /** Called once, first: how many keys the rows will hold. */
  count(count: number): Promise<void> | void;
  /** Called per batch, newest keys first. */
  rows(rows: LegacyKeyView[]): Promise<void> | void;
}

/** An owner candidate: what the checks need of a user. */
export interface KeyOwner {
  id: string;
  tenantId: string;
  status: string;
}

const EVICT_CHUNK = 1000;
const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function legacyView(r: LegacyKeyRow): LegacyKeyView {
  return {
    id: r.id,
    name: r.name,
    key_prefix: r.key_prefix,
    user_id: r.user_id,
    tenant_id: r.tenant_id,
    tenant_name: r.tenant_name,
    last_used_at: iso(r.last_used_at),
    created_at: iso(r.created_at)!,
  };
}

function ownerlessView(r: OwnerlessKeyRow): OwnerlessKeyView {
  return {
    id: r.id,
    name: r.name,
    key_prefix: r.key_prefix,
    legacy: r.legacy,
    current_quota_usage: Number(r.current_quota_usage),
    spend: Number(r.spend),
    created_at: iso(r.created_at)!,
  };
}

/**
 * The two legacy states a key can be in after the schema migrations, and what the
 * operator CLI does about them: keys without a lookup hash (backfill report, read only;
 * they upgrade themselves on first use) and keys without an owner (assign-owner).
 */
@Injectable()
export class LegacyKeysService {
  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly cache: KeyCache,
  ) {}

  /** Streams the keys without a lookup hash (one tenant, or all) from one read-only snapshot. */
  backfillReport(tenantId: string | null, visitor: BackfillReportVisitor, batchSize = 1000): Promise<void> {
    return this.keys.readLegacyKeys(
      tenantId,
      (n) => visitor.count(n),
      (rows) => visitor.rows(rows.map(legacyView)),
      batchSize,
    );
  }

  /** Keys whose permissions hold non-scope names (legacy, imported): at most `limit` listed. */
  async ignoredPermissions(
    tenantId: string | null,
    limit = 100,
  ): Promise<{ count: number; keys: IgnoredPermissionsView[] }> {
    const { count, rows } = await this.keys.findIgnoredPermissions(tenantId, KEY_SCOPES, limit);
    const keys = rows.map((r) => {
      const { scopes, ignored } = scopesOf(r.permissions);
      return {
        id: r.id,
        name: r.name,
        key_prefix: r.key_prefix,
        tenant_name: r.tenant_name,
        permissions: r.permissions,
        ignored: ignored.length ? ignored : ['(not a string)'],
        scopes,
      };
    });
    return { count, keys };
  }

  async ownerless(tenantId: string): Promise<OwnerlessKeyView[]> {
    return (await this.keys.findOwnerless(tenantId)).map(ownerlessView);
  }

  /**
   * Gives the tenant's ownerless keys this owner (see ApiKeysRepository.assignOwner) and
   * evicts them from every cache: cached principals still say "no owner". Running it
   * again changes nothing.
   */
  async assignOwner(tenantId: string, owner: KeyOwner): Promise<OwnerlessKeyView[]> {
    if (owner.tenantId !== tenantId)
      throw ApiError.badRequest('The owner must belong to the tenant of the keys', 'owner_other_tenant');
    if (owner.status !== 'active')
      throw ApiError.conflict(
        'The owner is disabled: keys of a disabled owner are refused, so they would stop working',
        'owner_disabled',
      );
    const rows = await this.keys.assignOwner(tenantId, owner.id);
    const hashes = rows
      .flatMap((r) => [r.key_lookup_hash, r.previous_lookup_hash])
      .filter((h): h is string => !!h);
    for (let i = 0; i < hashes.length; i += EVICT_CHUNK)
      await this.cache.evict(hashes.slice(i, i + EVICT_CHUNK));
    return rows
      .map(ownerlessView)
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
  }
}
