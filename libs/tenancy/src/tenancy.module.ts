import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import type { Request } from 'express';
import { DomainEvents } from './domain-events';
import { RequestContext } from './request-context';
import { Tenant } from './tenant.entity';
import { TenantsController } from './tenants.controller';
import { TenantsRepository } from './tenants.repository';
import { TenantsService } from './tenants.service';

@Global()
@Module({
  imports: [
    TypeOrmModule.forFeature([Tenant]),
    ClsModule.forRoot({
      global: true,
      middleware: {
        mount: true,
        generateId: true,
        idGenerator: (req: Request) => String((req as unknown as { id?: string }).id ?? ''),
      },
    }),
  ],
  controllers: [TenantsController],
  providers: [TenantsRepository, TenantsService, RequestContext, DomainEvents],
  exports: [TenantsService, RequestContext, DomainEvents],
})
export class TenancyModule {}
