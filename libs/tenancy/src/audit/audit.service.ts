import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ApiError } from '@app/observability';
import { RequestContext } from '../request-context';
import { AuditActorType } from './audit-entry.entity';
import { AuditEntryResponse, AuditPage, AuditQuery } from './audit.dto';
import { AuditRepository } from './audit.repository';
import { changedFields, cleanSnapshot } from './audit-snapshot';

export type AuditTargetType = 'tenant' | 'user' | 'api_key';

export interface AuditActor {
  type: AuditActorType;
  id?: string | null;
  label?: string | null;
}

/** What a service records; who, from where and which request are filled in from the request. */
export interface AuditRecord {
  /** `tenant.create`, `user.update`, `api_key.revoke`, `auth.login_failed`, ... */
  action: string;
  tenantId: string | null;
  targetType: AuditTargetType;
  targetId: string | null;
  /** The key's name, the user's email, the tenant's name (as it is after the change). */
  targetLabel?: string | null;
  /** Snapshots (API response shapes); secrets are dropped. With both, only changed fields are kept. */
  before?: object | null;
  after?: object | null;
  /** Instead of the request's principal (a login: the user who logged in, or the email tried). */
  actor?: AuditActor;
}

/**
 * The audit trail (README "Audit log"). Services record each mutation with
 * `record(manager, entry)` inside the transaction that makes the change, so a change
 * and its entry commit or roll back together. Read-only from the API, the page and the CLI.
 */
@Injectable()
export class AuditService {
  /** The actor of changes made outside an HTTP request (first start: `system`; the CLI sets `cli`). */
  private outsideRequest: AuditActor = { type: 'system', label: 'gateway' };

  constructor(
    private readonly entries: AuditRepository,
    private readonly ctx: RequestContext,
    private readonly db: DataSource,
  ) {}

  setActorOutsideRequests(actor: AuditActor): void {
    this.outsideRequest = actor;
  }

  /** Runs `fn` in one transaction; `fn` makes its change and calls `record` with the same manager. */
  transaction<T>(fn: (manager: EntityManager) => Promise<T>): Promise<T> {
    return this.db.transaction(fn);
  }

  /** An entry on its own (no other change to commit with it: logins). */
  append(entry: AuditRecord): Promise<void> {
    return this.transaction((m) => this.record(m, entry));
  }

  async record(manager: EntityManager, entry: AuditRecord): Promise<void> {
    const actor = entry.actor ?? (await this.currentActor(manager));
    const diff =
      entry.before && entry.after
        ? changedFields(entry.before, entry.after)
        : { before: cleanSnapshot(entry.before), after: cleanSnapshot(entry.after) };
    await this.entries.insert(manager, {
      tenantId: entry.tenantId,
      actorType: actor.type,
      actorId: actor.id ?? null,
      actorLabel: actor.label?.slice(0, 320) ?? null,
      action: entry.action,
      targetType: entry.targetType,
      targetId: entry.targetId,
      targetLabel: entry.targetLabel?.slice(0, 320) ?? null,
      before: diff.before,
      after: diff.after,
      requestId: this.ctx.requestId || null,
      ip: this.ctx.clientIp?.slice(0, 64) ?? null,
    });
  }

  private async currentActor(manager: EntityManager): Promise<AuditActor> {
    if (!this.ctx.active) return this.outsideRequest;
    const p = this.ctx.principal;
    if (p?.kind === 'master') return { type: 'master', label: 'master key' };
    if (p?.kind === 'user' && p.userId && p.tenantId)
      return {
        type: 'user',
        id: p.userId,
        label: await this.entries.userEmail(manager, p.tenantId, p.userId),
      };
    return { type: 'anonymous' };
  }

  /** GET /api/v1/audit-log: admins read their tenant; the master key every tenant, or the one it names. */
  async list(q: AuditQuery): Promise<AuditPage> {
    const p = this.ctx.principal;
    let tenantId: string | null;
    if (p?.kind === 'master') tenantId = q.tenant_id ?? p.tenantId ?? null;
    else {
      tenantId = this.ctx.tenantId;
      if (q.tenant_id && q.tenant_id !== tenantId)
        throw ApiError.forbidden('Admins read the audit log of their own tenant only', 'tenant_mismatch');
    }
    const rows = await this.entries.list({
      tenantId,
      action: q.action,
      targetId: q.target_id,
      actorId: q.actor_id,
      from: q.from ? new Date(q.from) : undefined,
      to: q.to ? new Date(q.to) : undefined,
      before: q.cursor,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit);
    return {
      data: page.map(AuditEntryResponse.from),
      next_cursor: rows.length > q.limit ? page[page.length - 1].id : null,
    };
  }

  /** The CLI's export: every entry matching, oldest id last, page by page. */
  async *export(filter: { tenantId: string | null; action?: string; from?: Date; to?: Date }) {
    let before: string | undefined;
    for (;;) {
      const rows = await this.entries.list({ ...filter, before, limit: 500 });
      for (const r of rows) yield AuditEntryResponse.from(r);
      if (rows.length < 500) return;
      before = rows[rows.length - 1].id;
    }
  }
}
