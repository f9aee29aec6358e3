import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import type { Request } from 'express';
import { AuditEntry } from './audit/audit-entry.entity';
import { AuditController } from './audit/audit.controller';
import { AuditRepository } from './audit/audit.repository';
import { AuditService } from './audit/audit.service';
import { DomainEvents } from './domain-events';
import { CLIENT_IP, RequestContext } from './request-context';
import { Tenant } from './tenant.entity';
import { TenantsController } from './tenants.controller';
import { TenantsRepository } from './tenants.repository';
import { TenantsService } from './tenants.service';

@Global()
@Module({
  imports: [
    TypeOrmModule.forFeature([Tenant, AuditEntry]),
    ClsModule.forRoot({
      global: true,
      middleware: {
        mount: true,
        generateId: true,
        idGenerator: (req: Request) => String((req as unknown as { id?: string }).id ?? ''),
        setup: (cls, req: Request) => cls.set(CLIENT_IP, req.ip),
        // no proxy providers here: resolving them ran a require() per request (~5% of a refused login's CPU)
        resolveProxyProviders: false,
      },
    }),
  ],
  controllers: [TenantsController, AuditController],
  providers: [TenantsRepository, TenantsService, RequestContext, DomainEvents, AuditRepository, AuditService],
  exports: [TenantsService, RequestContext, DomainEvents, AuditService],
})
export class TenancyModule {}
