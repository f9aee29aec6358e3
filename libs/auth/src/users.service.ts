import { Injectable } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { ApiError } from '@app/observability';
import { AuditService, DomainEvents, Page, quotaPatch, RequestContext } from '@app/tenancy';
import { CreateUserDto, keyDefaultsFrom, UpdateUserDto, UserResponse } from './dto/user.dto';
import { hashPassword } from './password';
import { User } from './user.entity';
import { UsersRepository } from './users.repository';

@Injectable()
export class UsersService {
  constructor(
    private readonly users: UsersRepository,
    private readonly ctx: RequestContext,
    private readonly config: AppConfig,
    private readonly events: DomainEvents,
    private readonly audit: AuditService,
  ) {}

  /** Inserts a user and records `user.create` in the same transaction. */
  private insertAudited(user: Partial<User> & { tenantId: string }): Promise<User> {
    return this.audit.transaction(async (m) => {
      const row = await this.users.insert(user, m);
      await this.audit.record(m, {
        action: 'user.create',
        tenantId: row.tenantId,
        targetType: 'user',
        targetId: row.id,
        targetLabel: row.email,
        after: UserResponse.from(row),
      });
      return row;
    });
  }

  /** Used by the REST API, the CLI and first start: tenant given explicitly. */
  async createInTenant(tenantId: string, dto: CreateUserDto): Promise<User> {
    // Emails are unique per tenant: a clash here says nothing about other tenants.
    if (await this.users.emailTaken(tenantId, dto.email))
      throw ApiError.conflict(`A user with email ${dto.email} exists in this tenant`, 'user_exists');
    const passwordHash = await hashPassword(dto.password, this.config.BCRYPT_ROUNDS);
    return this.insertAudited({
      tenantId,
      email: dto.email,
      name: dto.name ?? null,
      passwordHash,
      role: dto.role,
      status: 'active',
      keyDefaults: keyDefaultsFrom(dto.key_defaults),
      ...quotaPatch(dto),
    });
  }

  create(dto: CreateUserDto): Promise<User> {
    return this.createInTenant(this.ctx.tenantId, dto);
  }

  async list(offset: number, limit: number): Promise<Page<UserResponse>> {
    const [rows, total] = await this.users.list(this.ctx.tenantId, offset, limit);
    return { data: rows.map(UserResponse.from), total, limit, offset };
  }

  async get(id: string): Promise<User> {
    const u = await this.users.findById(this.ctx.tenantId, id);
    if (!u) throw ApiError.notFound(`No user ${id}`, 'user_not_found');
    return u;
  }

  async update(id: string, dto: UpdateUserDto): Promise<User> {
    const tenantId = this.ctx.tenantId;
    const user = await this.get(id);
    if (user.role === 'system') throw ApiError.forbidden('The system user cannot be changed', 'system_user');
    if (user.id === this.ctx.principal?.userId && (dto.status === 'disabled' || dto.role === 'member')) {
      throw ApiError.forbidden('You cannot disable or demote yourself', 'self_lockout');
    }
    const patch: Partial<User> = {};
    if (dto.name !== undefined) patch.name = dto.name;
    if (dto.role !== undefined) patch.role = dto.role;
    if (dto.status !== undefined) patch.status = dto.status;
    Object.assign(patch, quotaPatch(dto));
    if (dto.password !== undefined)
      patch.passwordHash = await hashPassword(dto.password, this.config.BCRYPT_ROUNDS);
    if (dto.key_defaults !== undefined) patch.keyDefaults = keyDefaultsFrom(dto.key_defaults);
    // A new password, role or status ends the user's sessions (their JWTs), on every instance.
    const endsSessions =
      dto.password !== undefined ||
      (dto.role !== undefined && dto.role !== user.role) ||
      (dto.status !== undefined && dto.status !== user.status);
    const updated = await this.audit.transaction(async (m) => {
      if (Object.keys(patch).length) await this.users.update(tenantId, id, patch, m);
      if (endsSessions) await this.users.bumpTokenVersion(tenantId, id, m);
      const row = (await this.users.findById(tenantId, id, m))!;
      const target = { tenantId, targetType: 'user' as const, targetId: id, targetLabel: row.email };
      if (Object.keys(patch).some((f) => f !== 'passwordHash'))
        await this.audit.record(m, {
          action: 'user.update',
          ...target,
          before: UserResponse.from(user),
          after: UserResponse.from(row),
        });
      if (patch.passwordHash) await this.audit.record(m, { action: 'user.password_change', ...target });
      return row;
    });
    await this.events.emit('user.changed', { tenantId, userId: id });
    if (patch.quotaPeriod !== undefined && patch.quotaPeriod !== user.quotaPeriod) {
      await this.events.emit('quota.period-changed', { tenantId });
    }
    return updated;
  }

  /** "Log out everywhere": every JWT the user holds now is refused from here on. */
  async endSessions(tenantId: string, userId: string): Promise<void> {
    const user = await this.users.findById(tenantId, userId);
    if (!user) throw ApiError.notFound(`No user ${userId}`, 'user_not_found');
    await this.users.bumpTokenVersion(tenantId, userId);
  }

  /** Admin route: end the sessions of a user of the caller's tenant. */
  endSessionsOf(id: string): Promise<void> {
    return this.endSessions(this.ctx.tenantId, id);
  }

  async delete(id: string): Promise<void> {
    const tenantId = this.ctx.tenantId;
    const user = await this.get(id);
    if (user.role === 'system') throw ApiError.forbidden('The system user cannot be deleted', 'system_user');
    if (user.id === this.ctx.principal?.userId)
      throw ApiError.forbidden('You cannot delete yourself', 'self_lockout');
    // The user's keys are deleted with them: their hashes are read now, evicted after the commit
    // (an eviction before it could be undone by a lookup that still sees the rows).
    const afterCommit: (() => Promise<void>)[] = [];
    await this.events.emit('user.deleting', { tenantId, userId: id, afterCommit });
    await this.audit.transaction(async (m) => {
      await this.users.delete(tenantId, id, m);
      await this.audit.record(m, {
        action: 'user.delete',
        tenantId,
        targetType: 'user',
        targetId: id,
        targetLabel: user.email,
        before: UserResponse.from(user),
      });
    });
    for (const run of afterCommit) await run();
  }

  /** The tenant's `system` user, owner of keys with no human owner; created on first need. */
  async systemUser(tenantId: string): Promise<User> {
    const existing = await this.users.findSystemUser(tenantId);
    if (existing) return existing;
    return this.insertAudited({
      tenantId,
      email: `system+${tenantId}@tenant.invalid`,
      name: 'system',
      passwordHash: null,
      role: 'system',
      status: 'active',
    });
  }

  /** Tenant-scoped lookup by id or email, for the CLI and key ownership. */
  findByIdOrEmail(tenantId: string, idOrEmail: string): Promise<User | null> {
    return /^[0-9a-f-]{36}$/i.test(idOrEmail)
      ? this.users.findById(tenantId, idOrEmail)
      : this.users.findByEmail(tenantId, idOrEmail);
  }

  /** The operator CLI's lookup when no tenant is named; an email used in several tenants is 409. */
  async findByIdOrEmailInAnyTenant(idOrEmail: string): Promise<User | null> {
    const found = await this.users.findByIdOrEmailInAnyTenant(idOrEmail);
    if (found.length > 1)
      throw ApiError.conflict(
        `${idOrEmail} is a user in several tenants: name the tenant`,
        'ambiguous_email',
      );
    return found[0] ?? null;
  }

  findById(tenantId: string, id: string): Promise<User | null> {
    return this.users.findById(tenantId, id);
  }
}
