import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { AppConfig } from '@app/config';
import { TenantsService } from '@app/tenancy';
import { UsersService } from './users.service';

/**
 * First start: with no tenant at all, create `default` and its admin. The password is
 * ADMIN_PASSWORD, or generated and printed once (stdout, never the log file).
 */
@Injectable()
export class BootstrapService implements OnApplicationBootstrap {
  private readonly logger = new Logger('Bootstrap');

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
    if (generated) {
      process.stdout.write(
        `\n  First start: admin login ${email} / ${password}\n  (shown once; set ADMIN_EMAIL/ADMIN_PASSWORD to choose them)\n` +
          `  Master key: in ${this.config.DATA_DIR}/secrets.json\n\n`,
      );
    }
  }
}
