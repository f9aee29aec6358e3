import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { ResponseOwner } from './response-owner.entity';

/** All SQL of response_owners; every read is scoped by tenant. */
@Injectable()
export class ResponseOwnersRepository {
  constructor(@InjectRepository(ResponseOwner) private readonly repo: Repository<ResponseOwner>) {}

  /** Records the owner once (an id seen again keeps its first owner). */
  async record(owner: Omit<ResponseOwner, 'createdAt' | 'tenant'>): Promise<void> {
    await this.repo.createQueryBuilder().insert().values(owner).orIgnore().execute();
  }

  findInTenant(tenantId: string, responseId: string): Promise<ResponseOwner | null> {
    return this.repo.findOne({ where: { tenantId, responseId } });
  }

  async deleteInTenant(tenantId: string, responseId: string): Promise<void> {
    await this.repo.delete({ tenantId, responseId });
  }
}
