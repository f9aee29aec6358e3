import { Injectable, OnModuleInit } from '@nestjs/common';
import * as bcrypt from 'bcrypt';
import { AppConfig } from '@app/config';
import { UsersService } from '@app/auth';
import { ApiError } from '@app/observability';
import { DomainEvents, Page, Principal, quotaPatch, RequestContext } from '@app/tenancy';
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
import { displayPrefix, generateKey, lookupHash } from './key-format';
import type { KeyPrincipal } from './key-principal';
import { scopesOf } from './scopes';

const LIMIT_FIELDS = [
  'quota_limit',
  'max_budget',
  'quota_period',
  'rate_limit_rpm',
  'allowed_models',
  'permissions',
] as const;

/** Key lifecycle for the admin API and the CLI. Every change evicts the key from every cache. */
@Injectable()
export class ApiKeysService implements OnModuleInit {
  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly cache: KeyCache,
    private readonly users: UsersService,
    private readonly ctx: RequestContext,
    private readonly config: AppConfig,
    private readonly events: DomainEvents,
  ) {}

  onModuleInit(): void {
    this.events.on('tenant.changed', ({ tenantId }) => this.evict(tenantId, {}));
    this.events.on('user.changed', ({ tenantId, userId }) => this.evict(tenantId, { userId }));
  }

  private async evict(tenantId: string, where: { keyId?: string; userId?: string }): Promise<void> {
    await this.cache.evict(await this.keys.lookupHashes(tenantId, where));
  }

  /** Members see and manage only their own keys; admins and the master key the tenant's. */
  private scope(p: Principal | undefined): KeyListFilter {
    if (p?.kind === 'user' && p.role !== 'admin') return { ownerId: p.userId ?? undefined };
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

  private async resolveOwner(
    tenantId: string,
    p: Principal | undefined,
    requested?: string,
  ): Promise<string> {
    if (p?.kind === 'user' && p.role !== 'admin') {
      if (requested && requested !== p.userId)
        throw ApiError.forbidden('Members create keys for themselves only', 'owner_not_allowed');
      return p.userId!;
    }
    if (requested) {
      const owner = await this.users.findById(tenantId, requested);
      if (!owner) throw ApiError.notFound(`No user ${requested} in this tenant`, 'user_not_found');
      return owner.id;
    }
    if (p?.kind === 'user') return p.userId!;
    return (await this.users.systemUser(tenantId)).id;
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
    const userId = await this.resolveOwner(tenantId, principal, dto.user_id);
    const key = dto.key ?? generateKey();
    const hash = lookupHash(key);
    if (dto.key && (await this.keys.lookupHashExists(hash)))
      throw ApiError.conflict('This key already exists', 'key_exists');
    const row = await this.keys.insert({
      tenantId,
      userId,
      name: dto.name,
      keyHash: await bcrypt.hash(key, this.config.BCRYPT_ROUNDS),
      keyLookupHash: hash,
      keyPrefix: displayPrefix(key),
      currentQuotaUsage: 0,
      spend: 0,
      quotaPeriod: 'none',
      permissions: [],
      ...this.limitsPatch(dto),
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
    if (changesLimits && p?.kind === 'user' && p.role !== 'admin') {
      throw ApiError.forbidden(
        "Only admins change a key's limits, models and permissions",
        'limits_admin_only',
      );
    }
    const patch = this.limitsPatch(dto);
    if (dto.name !== undefined) patch.name = dto.name;
    if (Object.keys(patch).length) await this.keys.update(tenantId, key.id, patch);
    await this.evict(tenantId, { keyId: key.id });
    if (patch.quotaPeriod !== undefined && patch.quotaPeriod !== key.quotaPeriod) {
      await this.events.emit('quota.period-changed', { tenantId });
    }
    return (await this.keys.findById(tenantId, key.id))!;
  }

  /** DELETE: revoke (the row stays for the ledger and reports). Idempotent. */
  async revoke(id: string): Promise<ApiKey> {
    const tenantId = this.ctx.tenantId;
    const key = await this.get(id);
    if (!key.revokedAt)
      await this.keys.update(tenantId, key.id, { revokedAt: new Date(), previousExpiresAt: null });
    await this.evict(tenantId, { keyId: key.id });
    return (await this.keys.findById(tenantId, key.id))!;
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
    await this.keys.update(tenantId, key.id, {
      keyHash: await bcrypt.hash(fresh, this.config.BCRYPT_ROUNDS),
      keyLookupHash: lookupHash(fresh),
      keyPrefix: displayPrefix(fresh),
      previousLookupHash: graceSeconds > 0 && currentOld ? currentOld : null,
      previousExpiresAt: graceSeconds > 0 && currentOld ? new Date(Date.now() + graceSeconds * 1000) : null,
    });
    await this.cache.evict([...oldHashes, lookupHash(fresh)]);
    const row = (await this.keys.findById(tenantId, key.id))!;
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
      allowed_models: k.allowedModels,
      scopes: scopesOf(k.permissions).scopes,
      expires_at: k.expiresAt ? k.expiresAt.toISOString() : null,
    };
  }
}
