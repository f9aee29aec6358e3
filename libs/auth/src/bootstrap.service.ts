import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { AppConfig } from '@app/config';
import { TenantsService } from '@app/tenancy';
import { UsersService } from './users.service';

/** What the start banner shows after a first start (main.ts prints it once, to stdout only). */
export interface FirstStart {
  tenantId: string;
  email: string;
  /** Generated: shown once. Undefined when ADMIN_PASSWORD chose it. */
  password?: string;
}

/**
 * First start: with no tenant at all, create `default` and its admin. The password is
 * ADMIN_PASSWORD, or generated and shown once in the start banner (stdout, never the log file).
 */
@Injectable()
export class BootstrapService implements OnApplicationBootstrap {
  private readonly logger = new Logger('Bootstrap');
  /** Set when this start created the first tenant and admin. */
  firstStart?: FirstStart;

  constructor(
    private readonly tenants: TenantsService,
    private readonly users: UsersService,
    private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.BOOTSTRAP_ADMIN) return;
    if ((await this.tenants.count()) > 0) return;
    const email = this.config.ADMIN_EMAIL ?? 'admin@localhost';
    const generated = !this.config.ADMIN_PASSWORD;
    const password = this.config.ADMIN_PASSWORD ?? randomBytes(12).toString('base64url');
    const tenant = await this.tenants.create({ name: 'default' });
    await this.users.createInTenant(tenant.id, { email, password, role: 'admin', name: 'Administrator' });
    await this.users.systemUser(tenant.id);
    this.logger.log(`first start: created tenant "default" (${tenant.id}) and admin ${email}`);
    this.firstStart = { tenantId: tenant.id, email, password: generated ? password : undefined };
  }
}
