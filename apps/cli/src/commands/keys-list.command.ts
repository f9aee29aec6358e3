import { CommandRunner, Option } from 'nest-commander';
import { ApiKeyResponse, ApiKeysService } from '@app/api-keys';
import { CliCommand } from '../cli-command';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { Column, headerLines, plural, rowLine, when } from '../table';

interface Options {
  tenant: string;
  json?: boolean;
}

const PAGE = 500;

const COLUMNS: Column<ApiKeyResponse>[] = [
  { header: 'Key ID', width: 36, value: (k) => k.id },
  { header: 'Name', width: 24, value: (k) => k.name },
  { header: 'Key Prefix', width: 12, value: (k) => k.key_prefix },
  { header: 'Owner', width: 36, value: (k) => k.user_id ?? '(no owner)' },
  { header: 'Status', width: 7, value: (k) => k.status },
  { header: 'Legacy', width: 6, value: (k) => (k.legacy ? 'yes' : 'no') },
  { header: 'Last used (UTC)', width: 16, value: (k) => when(k.last_used_at) },
  { header: 'Created (UTC)', width: 16, value: (k) => when(k.created_at) },
];

/** The tenant's keys, newest first, as GET /api/v1/api-keys shows them (never a key or a hash). */
@CliCommand({ name: 'keys:list', description: "List a tenant's API keys (newest first)." })
export class KeysListCommand extends CommandRunner {
  constructor(
    private readonly keys: ApiKeysService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'the tenant', required: true })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--json', description: 'print JSON (an array of keys, as the REST API returns them)' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: Options): Promise<void> {
    const tenant = await this.resolve.tenant(options.tenant);
    let shown = 0;
    if (options.json) await this.out.write('[');
    for (let offset = 0; ; offset += PAGE) {
      const page = await this.keys.listInTenant(tenant.id, offset, PAGE);
      if (options.json) {
        if (page.data.length)
          await this.out.write(`${shown ? ',' : ''}\n${page.data.map((k) => JSON.stringify(k)).join(',\n')}`);
      } else if (offset === 0) {
        if (!page.total) return this.out.line(`No API keys in tenant ${tenant.name} (${tenant.id}).`);
        await this.out.lines([
          `${plural(page.total, 'API key')} in tenant ${tenant.name} (${tenant.id}):`,
          ...headerLines(COLUMNS),
          ...page.data.map((k) => rowLine(COLUMNS, k)),
        ]);
      } else {
        await this.out.lines(page.data.map((k) => rowLine(COLUMNS, k)));
      }
      shown += page.data.length;
      if (page.data.length < PAGE || shown >= page.total) break;
    }
    if (options.json) await this.out.write(shown ? '\n]\n' : ']\n');
  }
}
