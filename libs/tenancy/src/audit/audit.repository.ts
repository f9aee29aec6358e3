import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { AuditEntry } from './audit-entry.entity';

export interface AuditFilter {
  /** null = every tenant (master key). */
  tenantId: string | null;
  action?: string;
  targetId?: string;
  actorId?: string;
  from?: Date;
  to?: Date;
  /** Entries older than this id. */
  before?: string;
  limit: number;
}

/** All SQL of audit_log: inserts (inside the caller's transaction) and the filtered, paged read. */
@Injectable()
export class AuditRepository {
  constructor(@InjectRepository(AuditEntry) private readonly repo: Repository<AuditEntry>) {}

  async insert(manager: EntityManager, row: Omit<AuditEntry, 'id' | 'createdAt'>): Promise<void> {
    // jsonb columns hold any object; TypeORM's deep-partial type cannot express that.
    await manager.getRepository(AuditEntry).insert(row as QueryDeepPartialEntity<AuditEntry>);
  }

  /** The acting user's email, read in the same transaction (users belong to the auth lib; one column). */
  async userEmail(manager: EntityManager, tenantId: string, userId: string): Promise<string | null> {
    const rows: { email: string }[] = await manager.query(
      `SELECT email FROM users WHERE tenant_id = $1 AND id = $2`,
      [tenantId, userId],
    );
    return rows[0]?.email ?? null;
  }

  list(f: AuditFilter): Promise<AuditEntry[]> {
    const qb = this.repo.createQueryBuilder('a').orderBy('a.id', 'DESC').limit(f.limit);
    if (f.tenantId) qb.andWhere('a.tenant_id = :tenantId', { tenantId: f.tenantId });
    if (f.action?.endsWith('.*'))
      qb.andWhere('a.action LIKE :family', { family: `${f.action.slice(0, -2)}.%` });
    else if (f.action) qb.andWhere('a.action = :action', { action: f.action });
    if (f.targetId) qb.andWhere('a.target_id = :targetId', { targetId: f.targetId });
    if (f.actorId) qb.andWhere('a.actor_id = :actorId', { actorId: f.actorId });
    if (f.from) qb.andWhere('a.created_at >= :from', { from: f.from });
    if (f.to) qb.andWhere('a.created_at < :to', { to: f.to });
    if (f.before) qb.andWhere('a.id < :before', { before: f.before });
    return qb.getMany();
  }
}
