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

  /** `manager`: inside the caller's transaction (the change and its audit entry commit together). */
  save(tenant: Partial<Tenant>, manager?: EntityManager): Promise<Tenant> {
    const repo = manager?.getRepository(Tenant) ?? this.repo;
    return repo.save(repo.create(tenant));
  }
}
