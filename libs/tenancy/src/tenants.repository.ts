import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import { Tenant } from './tenant.entity';

/** Tenants are the top of the hierarchy: only the master key reaches these methods. */
@Injectable()
export class TenantsRepository {
  constructor(@InjectRepository(Tenant) private readonly repo: Repository<Tenant>) {}

  count(): Promise<number> {
    return this.repo.count();
  }

  findById(id: string): Promise<Tenant | null> {
    return this.repo.findOne({ where: { id } });
  }

  findByName(name: string): Promise<Tenant | null> {
    return this.repo.createQueryBuilder('t').where('lower(t.name) = lower(:name)', { name }).getOne();
  }

  list(offset: number, limit: number): Promise<[Tenant[], number]> {
    return this.repo.findAndCount({ order: { createdAt: 'ASC' }, skip: offset, take: limit });
  }

  /**
   * The admins of these tenants, at most `max` each by email, and how many each has (users
   * belong to the auth lib; read here with one query for a page of tenants).
   */
  async admins(
    tenantIds: string[],
    max: number,
  ): Promise<
    Map<string, { admins: { id: string; email: string; status: 'active' | 'disabled' }[]; count: number }>
  > {
    const out = new Map<
      string,
      { admins: { id: string; email: string; status: 'active' | 'disabled' }[]; count: number }
    >();
    if (!tenantIds.length) return out;
    const rows = (await this.repo.manager.query(
      `SELECT tenant_id, id, email, status, n FROM (
         SELECT tenant_id, id, email, status,
                row_number() OVER (PARTITION BY tenant_id ORDER BY lower(email), id) AS rn,
                count(*) OVER (PARTITION BY tenant_id)::int AS n
           FROM users WHERE tenant_id = ANY($1::uuid[]) AND role = 'admin') a
        WHERE rn <= $2
        ORDER BY tenant_id, rn`,
      [tenantIds, max],
    )) as { tenant_id: string; id: string; email: string; status: 'active' | 'disabled'; n: number }[];
    for (const r of rows) {
      const t = out.get(r.tenant_id) ?? { admins: [], count: r.n };
      t.admins.push({ id: r.id, email: r.email, status: r.status });
      out.set(r.tenant_id, t);
    }
    return out;
  }

  /** `manager`: inside the caller's transaction (the change and its audit entry commit together). */
  save(tenant: Partial<Tenant>, manager?: EntityManager): Promise<Tenant> {
    const repo = manager?.getRepository(Tenant) ?? this.repo;
    return repo.save(repo.create(tenant));
  }
}
