import { Injectable } from '@nestjs/common';
import { ApiError } from '@app/observability';
import { AuditService } from './audit/audit.service';
import { quotaPatch } from './dto/quota-fields.dto';
import {
  CreateTenantDto,
  MAX_LISTED_ADMINS,
  TenantListItem,
  TenantResponse,
  UpdateTenantDto,
} from './dto/tenant.dto';
import { Page } from './dto/page.dto';
import { DomainEvents } from './domain-events';
import { Tenant } from './tenant.entity';
import { TenantsRepository } from './tenants.repository';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

@Injectable()
export class TenantsService {
  constructor(
    private readonly tenants: TenantsRepository,
    private readonly events: DomainEvents,
    private readonly audit: AuditService,
  ) {}

  async create(dto: CreateTenantDto): Promise<Tenant> {
    if (await this.tenants.findByName(dto.name))
      throw ApiError.conflict(`A tenant named "${dto.name}" exists`, 'tenant_exists');
    return this.audit.transaction(async (m) => {
      const t = await this.tenants.save({ name: dto.name, status: 'active', ...quotaPatch(dto) }, m);
      await this.audit.record(m, {
        action: 'tenant.create',
        tenantId: t.id,
        targetType: 'tenant',
        targetId: t.id,
        targetLabel: t.name,
        after: TenantResponse.from(t),
      });
      return t;
    });
  }

  /** A page of tenants, each with its admins (the first MAX_LISTED_ADMINS by email) and their count. */
  async list(offset: number, limit: number): Promise<Page<TenantListItem>> {
    const [rows, total] = await this.tenants.list(offset, limit);
    const admins = await this.tenants.admins(
      rows.map((t) => t.id),
      MAX_LISTED_ADMINS,
    );
    const data = rows.map((t) => ({
      ...TenantResponse.from(t),
      admins: admins.get(t.id)?.admins ?? [],
      admin_count: admins.get(t.id)?.count ?? 0,
    }));
    return { data, total, limit, offset };
  }

  async get(id: string): Promise<Tenant> {
    const t = await this.tenants.findById(id);
    if (!t) throw ApiError.notFound(`No tenant ${id}`, 'tenant_not_found');
    return t;
  }

  async update(id: string, dto: UpdateTenantDto): Promise<Tenant> {
    const t = await this.get(id);
    if (
      dto.name &&
      dto.name.toLowerCase() !== t.name.toLowerCase() &&
      (await this.tenants.findByName(dto.name))
    ) {
      throw ApiError.conflict(`A tenant named "${dto.name}" exists`, 'tenant_exists');
    }
    const patch: Partial<Tenant> = quotaPatch(dto);
    if (dto.name !== undefined) patch.name = dto.name;
    if (dto.status !== undefined) patch.status = dto.status;
    const saved = await this.audit.transaction(async (m) => {
      const row = await this.tenants.save({ ...t, ...patch }, m);
      await this.audit.record(m, {
        action: 'tenant.update',
        tenantId: t.id,
        targetType: 'tenant',
        targetId: t.id,
        targetLabel: row.name,
        before: TenantResponse.from(t),
        after: TenantResponse.from(row),
      });
      return row;
    });
    await this.events.emit('tenant.changed', { tenantId: saved.id });
    if (patch.quotaPeriod !== undefined && patch.quotaPeriod !== t.quotaPeriod) {
      await this.events.emit('quota.period-changed', { tenantId: saved.id });
    }
    return saved;
  }

  /**
   * X-Tenant-ID: a tenant by id, or by its (case-insensitive) name as the CLI takes it.
   * An id is tried first, so a tenant named like another's id cannot shadow it.
   */
  async findByIdOrName(idOrName: string): Promise<Tenant | null> {
    const byId = UUID.test(idOrName) ? await this.tenants.findById(idOrName) : null;
    return byId ?? this.tenants.findByName(idOrName);
  }

  /** For guards: is this tenant there and active? */
  async isActive(id: string): Promise<boolean> {
    const t = await this.tenants.findById(id);
    return t?.status === 'active';
  }

  count(): Promise<number> {
    return this.tenants.count();
  }
}
