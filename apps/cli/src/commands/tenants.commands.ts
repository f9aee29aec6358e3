import { CommandRunner, Option } from 'nest-commander';
import { CreateTenantDto, TenantResponse, TenantsService } from '@app/tenancy';
import { CliCommand } from '../cli-command';
import { CliOutput } from '../cli-output';
import { Column, table, when } from '../table';
import { validated } from '../validate';

interface JsonOption {
  json?: boolean;
}

@CliCommand({
  name: 'tenants:create',
  arguments: '<name>',
  argsDescription: { name: 'unique (case-insensitive) tenant name' },
  description: 'Create a tenant.',
})
export class TenantsCreateCommand extends CommandRunner {
  constructor(
    private readonly tenants: TenantsService,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--json', description: 'print the tenant as JSON' })
  parseJson(): boolean {
    return true;
  }

  async run([name]: string[], options: JsonOption = {}): Promise<void> {
    const dto = validated(CreateTenantDto, { name }, { name: '<name>' });
    const tenant = TenantResponse.from(await this.tenants.create(dto));
    if (options.json) return this.out.json(tenant);
    await this.out.line(`Created tenant ${tenant.name} (${tenant.id}).`);
  }
}

const COLUMNS: Column<TenantResponse>[] = [
  { header: 'Tenant ID', width: 36, value: (t) => t.id },
  { header: 'Name', width: 32, value: (t) => t.name },
  { header: 'Status', width: 8, value: (t) => t.status },
  { header: 'Created (UTC)', width: 16, value: (t) => when(t.created_at) },
];

@CliCommand({ name: 'tenants:list', description: 'List the tenants.' })
export class TenantsListCommand extends CommandRunner {
  constructor(
    private readonly tenants: TenantsService,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--json', description: 'print JSON (an array of tenants)' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: JsonOption = {}): Promise<void> {
    const all: TenantResponse[] = [];
    for (let offset = 0; ; offset += 200) {
      const page = await this.tenants.list(offset, 200);
      all.push(...page.data);
      if (offset + 200 >= page.total) break;
    }
    if (options.json) return this.out.json(all);
    if (!all.length) return this.out.line('No tenants yet: create one with tenants:create <name>.');
    await this.out.lines(table(COLUMNS, all));
  }
}
