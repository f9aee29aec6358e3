import { CommandRunner, Option } from 'nest-commander';
import { ApiKeysService, CreateApiKeyDto, KEY_SCOPES } from '@app/api-keys';
import { CliCommand } from '../cli-command';
import { CliError } from '../cli-error';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { validated } from '../validate';

interface Options {
  tenant: string;
  name: string;
  user?: string;
  quotaLimit?: string;
  maxBudget?: string;
  quotaPeriod?: string;
  rateLimitRpm?: string;
  rateLimitTpm?: string;
  allowedModels?: string;
  permissions?: string;
  expiresAt?: string;
  json?: boolean;
}

const FLAGS: Record<string, string> = {
  name: '--name',
  user_id: '--user',
  quota_limit: '--quota-limit',
  max_budget: '--max-budget',
  quota_period: '--quota-period',
  rate_limit_rpm: '--rate-limit-rpm',
  rate_limit_tpm: '--rate-limit-tpm',
  allowed_models: '--allowed-models',
  permissions: '--permissions',
  expires_at: '--expires-at',
};

function number(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(value))
    throw new CliError(`${flag}: must be a non-negative number (got "${value}")`);
  return Number(value);
}

const list = (value: string | undefined) =>
  value
    ?.split(',')
    .map((m) => m.trim())
    .filter(Boolean);

/** A virtual key, as POST /api/v1/api-keys makes it; the key is printed this once only. */
@CliCommand({
  name: 'keys:create',
  description:
    "Create a virtual API key and print it (once: only its hash is stored). Owner: --user, or the tenant's system user.",
})
export class KeysCreateCommand extends CommandRunner {
  constructor(
    private readonly keys: ApiKeysService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'the tenant of the key', required: true })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--name <name>', description: 'a name to recognise the key by', required: true })
  parseName(value: string): string {
    return value;
  }

  @Option({ flags: '--user <id|email>', description: "owner (default: the tenant's system user)" })
  parseUser(value: string): string {
    return value;
  }

  @Option({ flags: '--quota-limit <tokens>', description: 'token quota per period (default: unlimited)' })
  parseQuotaLimit(value: string): string {
    return value;
  }

  @Option({ flags: '--max-budget <usd>', description: 'USD budget per period (default: unlimited)' })
  parseMaxBudget(value: string): string {
    return value;
  }

  @Option({
    flags: '--quota-period <period>',
    description: 'when quota and budget reset',
    choices: ['none', 'daily', 'monthly'],
  })
  parseQuotaPeriod(value: string): string {
    return value;
  }

  @Option({ flags: '--rate-limit-rpm <n>', description: 'requests per minute (default: unlimited)' })
  parseRateLimitRpm(value: string): string {
    return value;
  }

  @Option({
    flags: '--rate-limit-tpm <n>',
    description: 'tokens per minute (sliding 60 s window; default: unlimited)',
  })
  parseRateLimitTpm(value: string): string {
    return value;
  }

  @Option({ flags: '--allowed-models <list>', description: 'comma-separated models (default: all)' })
  parseAllowedModels(value: string): string {
    return value;
  }

  @Option({
    flags: '--permissions <list>',
    description: `comma-separated endpoint scopes: ${KEY_SCOPES.join(', ')} (default: every endpoint)`,
  })
  parsePermissions(value: string): string {
    return value;
  }

  @Option({
    flags: '--expires-at <iso-date>',
    description: 'refused after this time, e.g. 2027-01-01T00:00:00Z',
  })
  parseExpiresAt(value: string): string {
    return value;
  }

  @Option({ flags: '--json', description: 'print the key record as JSON (with the key)' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: Options): Promise<void> {
    const tenant = await this.resolve.tenant(options.tenant);
    const owner = options.user ? await this.resolve.userInTenant(tenant, options.user) : null;
    const dto = validated(
      CreateApiKeyDto,
      {
        name: options.name,
        user_id: owner?.id,
        quota_limit: number('--quota-limit', options.quotaLimit),
        max_budget: number('--max-budget', options.maxBudget),
        quota_period: options.quotaPeriod,
        rate_limit_rpm: number('--rate-limit-rpm', options.rateLimitRpm),
        rate_limit_tpm: number('--rate-limit-tpm', options.rateLimitTpm),
        allowed_models: list(options.allowedModels),
        permissions: list(options.permissions),
        expires_at: options.expiresAt,
      },
      FLAGS,
    );
    const created = await this.keys.createInTenant(tenant.id, dto);
    if (options.json) return this.out.json(created);
    const ownerText = owner
      ? `${owner.email} (${owner.id})`
      : `the tenant's system user (${created.user_id})`;
    await this.out.lines([
      `Created API key "${created.name}" (${created.id}) in tenant ${tenant.name} (${tenant.id}), owner ${ownerText}.`,
      'The key is shown this once; store it now (only its hash is kept):',
      '',
      `  ${created.key}`,
      '',
    ]);
  }
}
