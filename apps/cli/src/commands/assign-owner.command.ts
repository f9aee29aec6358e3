import { CommandRunner, Option } from 'nest-commander';
import { LegacyKeysService, OwnerlessKeyView } from '@app/api-keys';
import { CliCommand } from '../cli-command';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { Column, plural, table, usd, when } from '../table';

interface Options {
  user: string;
  tenant?: string;
  apply?: boolean;
  json?: boolean;
}

const COLUMNS: Column<OwnerlessKeyView>[] = [
  { header: 'Key ID', width: 36, value: (k) => k.id },
  { header: 'Name', width: 24, value: (k) => k.name },
  { header: 'Key Prefix', width: 12, value: (k) => k.key_prefix },
  { header: 'Legacy', width: 6, value: (k) => (k.legacy ? 'yes' : 'no') },
  { header: 'Usage (tokens)', width: 14, value: (k) => String(k.current_quota_usage), align: 'right' },
  { header: 'Spend (USD)', width: 12, value: (k) => usd(k.spend), align: 'right' },
  { header: 'Created (UTC)', width: 16, value: (k) => when(k.created_at) },
];

/**
 * The key-owner script of the migration guide (../shared/seeds/000, "Update Existing API
 * Keys"): keys without an owner get one, and their usage counters start at 0. A dry run
 * unless --apply; the change is one statement, so all of the tenant's ownerless keys or
 * none; a second run finds nothing to change.
 */
@CliCommand({
  name: 'keys:assign-owner',
  description:
    "Give the ownerless API keys of the user's tenant (or of --tenant) this owner, with current_quota_usage and spend reset to 0. Dry run unless --apply.",
  redis: true,
})
export class AssignOwnerCommand extends CommandRunner {
  constructor(
    private readonly legacy: LegacyKeysService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--user <id|email>', description: 'the new owner', required: true })
  parseUser(value: string): string {
    return value;
  }

  @Option({
    flags: '--tenant <id|name>',
    description: "the tenant whose keys to change (default: the user's); the user must belong to it",
  })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--apply', description: 'make the change (default: only show what would change)' })
  parseApply(): boolean {
    return true;
  }

  @Option({ flags: '--json', description: 'print JSON: {applied, tenant, owner, keys: [...]}' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: Options): Promise<void> {
    const tenant = options.tenant
      ? await this.resolve.tenant(options.tenant)
      : await this.resolve.tenant((await this.resolve.user(options.user)).tenantId);
    const owner = await this.resolve.userInTenant(tenant, options.user);
    const keys = options.apply
      ? await this.legacy.assignOwner(tenant.id, owner)
      : await this.legacy.ownerless(tenant.id);
    const where = `tenant ${tenant.name} (${tenant.id})`;
    const who = `${owner.email} (${owner.id})`;

    if (options.json) {
      await this.out.json({
        applied: !!options.apply,
        tenant: { id: tenant.id, name: tenant.name },
        owner: { id: owner.id, email: owner.email },
        keys,
      });
      return;
    }
    if (!keys.length) {
      await this.out.line(`No ownerless API keys in ${where}: nothing to change.`);
      return;
    }
    if (!options.apply) {
      await this.out.lines([
        `Dry run: ${plural(keys.length, 'ownerless API key')} in ${where} would get the owner ${who};`,
        'their current_quota_usage and spend would be set to 0 (limits are kept):',
        '',
        ...table(COLUMNS, keys),
        '',
        'Nothing was changed. Run again with --apply to make the change.',
      ]);
      return;
    }
    await this.out.lines([
      `Assigned ${plural(keys.length, 'API key')} in ${where} to ${who};`,
      'their current_quota_usage and spend start at 0 (the figures below are what they had):',
      '',
      ...table(COLUMNS, keys),
    ]);
  }
}
