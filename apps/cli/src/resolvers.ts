import { Injectable } from '@nestjs/common';
import { User, UsersService } from '@app/auth';
import { Tenant, TenantsService } from '@app/tenancy';
import { CliError } from './cli-error';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PAGE = 200;

/** Turns what an operator types (an id, a name, an email) into rows, or one clear error. */
@Injectable()
export class Resolvers {
  constructor(
    private readonly tenants: TenantsService,
    private readonly users: UsersService,
  ) {}

  /** A tenant by id or (case-insensitive) name. */
  async tenant(idOrName: string): Promise<Tenant> {
    if (UUID.test(idOrName)) {
      const byId = await this.tenants.get(idOrName).catch(() => null);
      if (byId) return byId;
    }
    // TenantsService has no lookup by name; tenants are few, so page through them.
    const wanted = idOrName.toLowerCase();
    for (let offset = 0; ; offset += PAGE) {
      const page = await this.tenants.list(offset, PAGE);
      const hit = page.data.find((t) => t.name.toLowerCase() === wanted);
      if (hit) return this.tenants.get(hit.id);
      if (offset + PAGE >= page.total) break;
    }
    throw new CliError(`no tenant "${idOrName}" (give its id or its name)`);
  }

  /** A user of this tenant by id or email; names the user's real tenant when it is another one. */
  async userInTenant(tenant: Tenant, idOrEmail: string): Promise<User> {
    const user = await this.users.findByIdOrEmail(tenant.id, idOrEmail);
    if (user) return user;
    const elsewhere = await this.users.findByIdOrEmailInAnyTenant(idOrEmail);
    if (elsewhere)
      throw new CliError(
        `user "${idOrEmail}" belongs to another tenant (${elsewhere.tenantId}), not to ${tenant.name} (${tenant.id})`,
      );
    throw new CliError(`no user "${idOrEmail}" in tenant ${tenant.name} (${tenant.id})`);
  }

  /** A user by id or email, whatever the tenant. */
  async user(idOrEmail: string): Promise<User> {
    const user = await this.users.findByIdOrEmailInAnyTenant(idOrEmail);
    if (!user) throw new CliError(`no user "${idOrEmail}" (give their id or email)`);
    return user;
  }
}
