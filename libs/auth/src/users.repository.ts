import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import { User } from './user.entity';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every method but the login and operator lookups takes the tenant first: no other unscoped user query. */
@Injectable()
export class UsersRepository {
  constructor(@InjectRepository(User) private readonly repo: Repository<User>) {}

  /** Login only: email is unique across tenants. Includes the password hash. */
  findForLogin(email: string): Promise<User | null> {
    return this.repo
      .createQueryBuilder('u')
      .addSelect('u.passwordHash')
      .where('lower(u.email) = lower(:email)', { email })
      .getOne();
  }

  emailTaken(email: string): Promise<boolean> {
    return this.repo.createQueryBuilder('u').where('lower(u.email) = lower(:email)', { email }).getExists();
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
   * Operator CLI only (it names a user before it knows the tenant): email is unique
   * across tenants and so is the id. Without the password hash.
   */
  findByIdOrEmailInAnyTenant(idOrEmail: string): Promise<User | null> {
    const qb = this.repo.createQueryBuilder('u');
    return (
      UUID.test(idOrEmail)
        ? qb.where('u.id = :id', { id: idOrEmail })
        : qb.where('lower(u.email) = lower(:email)', { email: idOrEmail })
    ).getOne();
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

  async delete(tenantId: string, id: string, manager?: EntityManager): Promise<boolean> {
    const r = await this.r(manager).delete({ tenantId, id });
    return (r.affected ?? 0) > 0;
  }
}
