import { LazyModuleLoader } from '@nestjs/core';
import { CommandRunner, Option } from 'nest-commander';
import { ApiError } from '@app/observability';
import { QuotaModule, usageCsv, UsageQuery, UsageReportResponse, UsageRow, UsageService } from '@app/quota';
import { CliCommand } from '../cli-command';
import { CliError } from '../cli-error';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { Column, plural, table, usd } from '../table';
import { validated } from '../validate';

interface Options {
  tenant: string;
  from?: string;
  to?: string;
  groupBy?: string;
  splitBy?: string;
  user?: string;
  key?: string;
  csv?: boolean;
  json?: boolean;
}

/** The API's query parameters as the operator typed them, for error lines. */
const FLAGS: Record<string, string> = {
  from: '--from',
  to: '--to',
  group_by: '--group-by',
  split_by: '--split-by',
  user_id: '--user',
  api_key_id: '--key',
};

const n = (v: number) => String(v);
const FIGURES: Column<UsageRow>[] = [
  { header: 'Requests', width: 10, value: (r) => n(r.requests), align: 'right' },
  { header: 'Prompt', width: 14, value: (r) => n(r.prompt_tokens), align: 'right' },
  { header: 'Completion', width: 14, value: (r) => n(r.completion_tokens), align: 'right' },
  { header: 'Tokens', width: 14, value: (r) => n(r.total_tokens), align: 'right' },
  { header: 'Cost (USD)', width: 16, value: (r) => usd(r.cost_usd), align: 'right' },
];
const GROUP: Record<string, Column<UsageRow>[]> = {
  day: [{ header: 'Day', width: 10, value: (r) => r.day ?? '' }],
  model: [{ header: 'Model', width: 40, value: (r) => r.model ?? '' }],
  user: [{ header: 'User', width: 36, value: (r) => r.user_id ?? '(no user)' }],
  key: [
    { header: 'Key ID', width: 36, value: (r) => r.api_key_id ?? '' },
    { header: 'Key name', width: 30, value: (r) => r.key_name ?? '(gone)' },
  ],
};

function columns(report: UsageReportResponse): Column<UsageRow>[] {
  if (!report.split_by) return [...GROUP[report.group_by], ...FIGURES];
  const other = (c: Column<UsageRow>): Column<UsageRow> => ({
    ...c,
    value: (r) => (r.other ? '(other)' : c.value(r)),
  });
  return [...GROUP.day, ...GROUP[report.split_by].map(other), ...FIGURES];
}

/**
 * A tenant's usage from the ledger, as GET /api/v1/usage gives it (the same service, the
 * same query rules): a table, `--json` (the API's body) or `--csv` (the API's CSV, byte for
 * byte: the same usageCsv). Read only.
 *
 * The quota module is loaded lazily, as quota:reconcile does: none of its start-up work
 * (ledger spool, flush timers, counter rebuilds) runs for a report.
 */
@CliCommand({
  name: 'usage',
  description:
    "A tenant's usage from the ledger (requests, tokens, cost) per day, model, user or key; --csv as GET /api/v1/usage?format=csv. Read only.",
})
export class UsageCommand extends CommandRunner {
  constructor(
    private readonly lazy: LazyModuleLoader,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'the tenant', required: true })
  parseTenant(value: string): string {
    return value;
  }

  @Option({
    flags: '--from <date>',
    description: 'from (inclusive), ISO 8601 (default: 30 days before --to)',
  })
  parseFrom(value: string): string {
    return value;
  }

  @Option({ flags: '--to <date>', description: 'to (exclusive), ISO 8601 (default: now)' })
  parseTo(value: string): string {
    return value;
  }

  @Option({
    flags: '--group-by <day|model|user|key>',
    description: 'one row per ... (default day, QUOTA_TIMEZONE)',
  })
  parseGroupBy(value: string): string {
    return value;
  }

  @Option({
    flags: '--split-by <model|user|key>',
    description:
      'with --group-by day: one row per day and model, user or key (the top 10; the rest is "other")',
  })
  parseSplitBy(value: string): string {
    return value;
  }

  @Option({ flags: '--user <id|email>', description: "only this user's records" })
  parseUser(value: string): string {
    return value;
  }

  @Option({ flags: '--key <id>', description: "only this API key's records" })
  parseKey(value: string): string {
    return value;
  }

  @Option({ flags: '--csv', description: 'print CSV, as GET /api/v1/usage?format=csv' })
  parseCsv(): boolean {
    return true;
  }

  @Option({ flags: '--json', description: 'print JSON, as GET /api/v1/usage' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: Options): Promise<void> {
    if (options.csv && options.json) throw new CliError('--csv and --json exclude each other');
    const tenant = await this.resolve.tenant(options.tenant);
    const user = options.user ? await this.resolve.userInTenant(tenant, options.user) : undefined;
    const given = {
      from: options.from,
      to: options.to,
      group_by: options.groupBy,
      split_by: options.splitBy,
      user_id: user?.id,
      api_key_id: options.key,
    };
    const q = validated(
      UsageQuery,
      Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
      FLAGS,
    );
    const quota = await this.lazy.load(() => QuotaModule, { logger: false });
    const report = await quota
      .get(UsageService)
      .reportIn(tenant.id, q)
      .catch((e: unknown) => {
        if (e instanceof ApiError) throw new CliError(flagged(e.message));
        throw e;
      });
    if (options.csv) return this.out.write(usageCsv(report));
    if (options.json) return this.out.json(report);
    const t = report.totals;
    const by = report.split_by ? `day and ${report.split_by}` : report.group_by;
    await this.out.lines([
      `Usage of tenant ${tenant.name} (${tenant.id}) from ${report.from} to ${report.to}, by ${by}:`,
      '',
      ...(report.data.length ? table(columns(report), report.data) : ['(no usage in this range)']),
      '',
      `Total: ${plural(t.requests, 'request')}, ${t.total_tokens} tokens (${t.prompt_tokens} prompt, ${t.completion_tokens} completion), $${usd(t.cost_usd)}`,
    ]);
  }
}

/** An API message names the query parameter ("from must be ..."): the operator typed a flag. */
function flagged(message: string): string {
  const [first, ...rest] = message.split(' ');
  return FLAGS[first] ? [FLAGS[first], ...rest].join(' ') : message;
}
