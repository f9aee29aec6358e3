import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import { User } from './user.entity';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every method but the login and operator lookups takes the tenant first: no other unscoped user query. */
@Injectable()
export class UsersRepository {
  constructor(@InjectRepository(User) private readonly repo: Repository<User>) {}

  /**
   * Login only, with the password hash: the users with this email (unique per tenant), in the
   * named tenant (id or name) when one is given. At most 2 rows: the caller needs exactly one.
   */
  findForLogin(email: string, tenant?: string): Promise<User[]> {
    const qb = this.repo
      .createQueryBuilder('u')
      .addSelect('u.passwordHash')
      .where('lower(u.email) = lower(:email)', { email });
    if (tenant !== undefined)
      qb.andWhere(
        'u.tenant_id IN (SELECT t.id FROM tenants t WHERE t.id::text = :tenant OR lower(t.name) = lower(:tenant))',
        {
          tenant,
        },
      );
    return qb.limit(2).getMany();
  }

  emailTaken(tenantId: string, email: string): Promise<boolean> {
    return this.repo
      .createQueryBuilder('u')
      .where('u.tenant_id = :tenantId AND lower(u.email) = lower(:email)', { tenantId, email })
      .getExists();
  }

  /** `manager` (here and below): inside the caller's transaction, which also writes the audit entry. */
  findById(tenantId: string, id: string, manager?: EntityManager): Promise<User | null> {
    return this.r(manager).findOne({ where: { tenantId, id } });
  }

  private r(manager?: EntityManager): Repository<User> {
    return manager?.getRepository(User) ?? this.repo;
  }

  findByEmail(tenantId: string, email: string): Promise<User | null> {
    return this.repo
      .createQueryBuilder('u')
      .where('u.tenant_id = :tenantId AND lower(u.email) = lower(:email)', { tenantId, email })
      .getOne();
  }

  /**
   * Operator CLI only (it names a user before it knows the tenant): by id (unique), or by
   * email (unique per tenant: up to 2 rows, so the caller can tell an ambiguous one). Without
   * the password hash.
   */
  findByIdOrEmailInAnyTenant(idOrEmail: string): Promise<User[]> {
    const qb = this.repo.createQueryBuilder('u');
    return (
      UUID.test(idOrEmail)
        ? qb.where('u.id = :id', { id: idOrEmail })
        : qb.where('lower(u.email) = lower(:email)', { email: idOrEmail })
    )
      .limit(2)
      .getMany();
  }

  findSystemUser(tenantId: string): Promise<User | null> {
    return this.repo.findOne({ where: { tenantId, role: 'system' } });
  }

  list(tenantId: string, offset: number, limit: number): Promise<[User[], number]> {
    return this.repo.findAndCount({
      where: { tenantId },
      order: { createdAt: 'ASC' },
      skip: offset,
      take: limit,
    });
  }

  async insert(user: Partial<User> & { tenantId: string }, manager?: EntityManager): Promise<User> {
    const repo = this.r(manager);
    const saved = await repo.save(repo.create(user));
    return (await this.findById(user.tenantId, saved.id, manager))!;
  }

  async update(tenantId: string, id: string, patch: Partial<User>, manager?: EntityManager): Promise<void> {
    await this.r(manager).update({ tenantId, id }, patch);
  }

  /** Ends every session of the user: JWTs carry the version they were issued with. */
  async bumpTokenVersion(tenantId: string, id: string, manager?: EntityManager): Promise<void> {
    await this.r(manager).increment({ tenantId, id }, 'tokenVersion', 1);
  }

  async delete(tenantId: string, id: string, manager?: EntityManager): Promise<boolean> {
    const r = await this.r(manager).delete({ tenantId, id });
    return (r.affected ?? 0) > 0;
  }
}
