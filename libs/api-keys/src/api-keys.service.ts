import { Injectable, OnModuleInit } from '@nestjs/common';
import * as bcrypt from 'bcrypt';
import { AppConfig } from '@app/config';
import { User, UsersService } from '@app/auth';
import { ApiError } from '@app/observability';
import { AuditService, DomainEvents, Page, Principal, quotaPatch, RequestContext } from '@app/tenancy';
import type { EntityManager } from 'typeorm';
import { ApiKey } from './api-key.entity';
import { ApiKeysRepository, KeyListFilter } from './api-keys.repository';
import {
  ApiKeyCreatedResponse,
  ApiKeyResponse,
  CreateApiKeyDto,
  KeyInfoResponse,
  KeyLimitsDto,
  UpdateApiKeyDto,
} from './dto/api-key.dto';
import { KeyCache } from './key-cache';
import { applyKeyDefaults } from './key-defaults';
import { displayPrefix, generateKey, lookupHash } from './key-format';
import type { KeyPrincipal } from './key-principal';
import { scopesOf } from './scopes';

/** A logged-in user below admin: their own keys, within their defaults (README "Virtual API keys", who may do what). */
const isMember = (p: Principal | undefined): p is Principal & { kind: 'user' } =>
  p?.kind === 'user' && p.role !== 'admin';

const LIMIT_FIELDS = [
  'quota_limit',
  'max_budget',
  'quota_period',
  'rate_limit_rpm',
  'rate_limit_tpm',
  'allowed_models',
  'permissions',
] as const;

/** Key lifecycle for the admin API and the CLI. Every change evicts the key from every cache once it has committed. */
@Injectable()
export class ApiKeysService implements OnModuleInit {
  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly cache: KeyCache,
    private readonly users: UsersService,
    private readonly ctx: RequestContext,
    private readonly config: AppConfig,
    private readonly events: DomainEvents,
    private readonly audit: AuditService,
  ) {}

  /** Writes a change and its audit entry in one transaction; returns the key as it is then. */
  private changeAudited(
    tenantId: string,
    before: ApiKey,
    action: string,
    write: (m: EntityManager) => Promise<unknown>,
  ): Promise<ApiKey> {
    return this.audit.transaction(async (m) => {
      await write(m);
      const after = (await this.keys.findById(tenantId, before.id, {}, m))!;
      await this.audit.record(m, {
        action,
        tenantId,
        targetType: 'api_key',
        targetId: before.id,
        targetLabel: after.name,
        before: ApiKeyResponse.from(before),
        after: ApiKeyResponse.from(after),
      });
      return after;
    });
  }

  onModuleInit(): void {
    this.events.on('tenant.changed', ({ tenantId }) => this.evict(tenantId, {}));
    this.events.on('user.changed', ({ tenantId, userId }) => this.evict(tenantId, { userId }));
    this.events.on('user.deleting', async ({ tenantId, userId, afterCommit }) => {
      const hashes = await this.keys.lookupHashes(tenantId, { userId });
      afterCommit.push(() => this.cache.evict(hashes));
    });
  }

  private async evict(tenantId: string, where: { keyId?: string; userId?: string }): Promise<void> {
    await this.cache.evict(await this.keys.lookupHashes(tenantId, where));
  }

  /** Members see and manage only their own keys; admins and the master key the tenant's. */
  private scope(p: Principal | undefined): KeyListFilter {
    if (isMember(p)) return { ownerId: p.userId ?? undefined };
    return {};
  }

  private limitsPatch(dto: KeyLimitsDto): Partial<ApiKey> {
    const patch: Partial<ApiKey> = quotaPatch(dto);
    if (dto.rate_limit_rpm !== undefined) patch.rateLimitRpm = dto.rate_limit_rpm;
    if (dto.allowed_models !== undefined) patch.allowedModels = dto.allowed_models;
    if (dto.permissions !== undefined) patch.permissions = dto.permissions ?? [];
    if (dto.expires_at !== undefined)
      patch.expiresAt = dto.expires_at === null ? null : new Date(dto.expires_at);
    return patch;
  }

  private async resolveOwner(tenantId: string, p: Principal | undefined, requested?: string): Promise<User> {
    const find = async (id: string) => {
      const owner = await this.users.findById(tenantId, id);
      if (!owner) throw ApiError.notFound(`No user ${id} in this tenant`, 'user_not_found');
      return owner;
    };
    if (isMember(p)) {
      if (requested && requested !== p.userId)
        throw ApiError.forbidden('Members create keys for themselves only', 'owner_not_allowed');
      return find(p.userId!);
    }
    if (requested) return find(requested);
    if (p?.kind === 'user') return find(p.userId!);
    return this.users.systemUser(tenantId);
  }

  async create(dto: CreateApiKeyDto): Promise<ApiKeyCreatedResponse> {
    return this.createInTenant(this.ctx.tenantId, dto, this.ctx.principal);
  }

  /** Also the CLI's entry point (principal undefined = operator). */
  async createInTenant(
    tenantId: string,
    dto: CreateApiKeyDto,
    principal?: Principal,
  ): Promise<ApiKeyCreatedResponse> {
    const member = isMember(principal);
    if (member && dto.key !== undefined)
      throw ApiError.forbidden('Only admins import existing key material', 'import_admin_only');
    const owner = await this.resolveOwner(tenantId, principal, dto.user_id);
    const userId = owner.id;
    dto = applyKeyDefaults(dto, owner.keyDefaults, member);
    const key = dto.key ?? generateKey();
    const hash = lookupHash(key);
    if (dto.key && (await this.keys.lookupHashExists(hash)))
      throw ApiError.conflict('This key already exists', 'key_exists');
    const keyHash = await bcrypt.hash(key, this.config.BCRYPT_ROUNDS);
    const row = await this.audit.transaction(async (m) => {
      const inserted = await this.keys.insert(
        {
          tenantId,
          userId,
          name: dto.name,
          keyHash,
          keyLookupHash: hash,
          keyPrefix: displayPrefix(key),
          permissions: dto.permissions ?? [],
          currentQuotaUsage: 0,
          spend: 0,
          quotaPeriod: 'none',
          ...this.limitsPatch(dto),
        },
        m,
      );
      await this.audit.record(m, {
        action: 'api_key.create',
        tenantId,
        targetType: 'api_key',
        targetId: inserted.id,
        targetLabel: inserted.name,
        after: { ...ApiKeyResponse.from(inserted), imported: !!dto.key },
      });
      return inserted;
    });
    await this.cache.evict([hash]); // a negative-cache entry for an imported key must go
    return { ...ApiKeyResponse.from(row), key };
  }

  async list(offset: number, limit: number): Promise<Page<ApiKeyResponse>> {
    const [rows, total] = await this.keys.list(
      this.ctx.tenantId,
      this.scope(this.ctx.principal),
      offset,
      limit,
    );
    return { data: rows.map((r) => ApiKeyResponse.from(r)), total, limit, offset };
  }

  async listInTenant(tenantId: string, offset: number, limit: number): Promise<Page<ApiKeyResponse>> {
    const [rows, total] = await this.keys.list(tenantId, {}, offset, limit);
    return { data: rows.map((r) => ApiKeyResponse.from(r)), total, limit, offset };
  }

  async get(id: string): Promise<ApiKey> {
    const key = await this.keys.findById(this.ctx.tenantId, id, this.scope(this.ctx.principal));
    if (!key) throw ApiError.notFound(`No API key ${id}`, 'key_not_found');
    return key;
  }

  async update(id: string, dto: UpdateApiKeyDto): Promise<ApiKey> {
    const tenantId = this.ctx.tenantId;
    const p = this.ctx.principal;
    const key = await this.get(id);
    const changesLimits = LIMIT_FIELDS.some((f) => dto[f] !== undefined);
    if (changesLimits && isMember(p)) {
      throw ApiError.forbidden(
        "Only admins change a key's limits, models and permissions",
        'limits_admin_only',
      );
    }
    // A member may set or bring forward an expiry, never push it back or remove it.
    if (dto.expires_at !== undefined && isMember(p) && key.expiresAt) {
      const current = new Date(key.expiresAt).getTime();
      if (dto.expires_at === null || new Date(dto.expires_at).getTime() > current)
        throw ApiError.forbidden(
          "Only admins extend or remove a key's expiry; members may only bring it forward",
          'expiry_admin_only',
        );
    }
    const patch = this.limitsPatch(dto);
    if (dto.name !== undefined) patch.name = dto.name;
    const updated = Object.keys(patch).length
      ? await this.changeAudited(tenantId, key, 'api_key.update', (m) =>
          this.keys.update(tenantId, key.id, patch, m),
        )
      : key;
    await this.evict(tenantId, { keyId: key.id });
    if (patch.quotaPeriod !== undefined && patch.quotaPeriod !== key.quotaPeriod) {
      await this.events.emit('quota.period-changed', { tenantId });
    }
    return updated;
  }

  /** DELETE: revoke (the row stays for the ledger and reports). Idempotent. */
  async revoke(id: string): Promise<ApiKey> {
    const tenantId = this.ctx.tenantId;
    const key = await this.get(id);
    const revoked = key.revokedAt
      ? key
      : await this.changeAudited(tenantId, key, 'api_key.revoke', (m) =>
          this.keys.update(tenantId, key.id, { revokedAt: new Date(), previousExpiresAt: null }, m),
        );
    await this.evict(tenantId, { keyId: key.id });
    return revoked;
  }

  /**
   * New key material on the same key id (usage, limits and counters carry on). With a
   * grace period the old key keeps working until it ends. A legacy key never used since the
   * upgrade has no lookup hash to keep, so it gets no grace.
   */
  async regenerate(id: string, graceSeconds = 0): Promise<ApiKeyCreatedResponse> {
    const tenantId = this.ctx.tenantId;
    const key = await this.get(id);
    if (key.revokedAt) throw ApiError.conflict('A revoked key cannot be regenerated', 'key_revoked');
    const oldHashes = await this.keys.lookupHashes(tenantId, { keyId: key.id });
    const currentOld = (await this.keys.findWithLookupHash(tenantId, key.id))?.keyLookupHash ?? null;
    const fresh = generateKey();
    const keyHash = await bcrypt.hash(fresh, this.config.BCRYPT_ROUNDS);
    const row = await this.changeAudited(tenantId, key, 'api_key.regenerate', (m) =>
      this.keys.update(
        tenantId,
        key.id,
        {
          keyHash,
          keyLookupHash: lookupHash(fresh),
          keyPrefix: displayPrefix(fresh),
          previousLookupHash: graceSeconds > 0 && currentOld ? currentOld : null,
          previousExpiresAt:
            graceSeconds > 0 && currentOld ? new Date(Date.now() + graceSeconds * 1000) : null,
        },
        m,
      ),
    );
    await this.cache.evict([...oldHashes, lookupHash(fresh)]);
    return { ...ApiKeyResponse.from(row), key: fresh };
  }

  /** GET /api/v1/me with a key. */
  async info(p: KeyPrincipal): Promise<KeyInfoResponse> {
    const k = await this.keys.findById(p.tenantId, p.apiKeyId);
    if (!k) throw ApiError.unauthorized('Invalid API key', 'invalid_api_key');
    return {
      id: k.id,
      name: k.name,
      key_prefix: k.keyPrefix,
      tenant_id: k.tenantId,
      user_id: k.userId,
      quota_limit: k.quotaLimit,
      current_quota_usage: k.currentQuotaUsage,
      max_budget: k.maxBudget,
      spend: k.spend,
      quota_period: k.quotaPeriod,
      rate_limit_rpm: k.rateLimitRpm,
      rate_limit_tpm: k.rateLimitTpm ?? null,
      allowed_models: k.allowedModels,
      scopes: scopesOf(k.permissions).scopes,
      expires_at: k.expiresAt ? k.expiresAt.toISOString() : null,
    };
  }
}
