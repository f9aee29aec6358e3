import { LazyModuleLoader } from '@nestjs/core';
import { CommandRunner, Option } from 'nest-commander';
import { AppConfig } from '@app/config';
import { CounterChange, QuotaModule, QuotaStore, RebuildReport, ReconciliationService } from '@app/quota';
import { CliCommand } from '../cli-command';
import { CliError } from '../cli-error';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { Column, plural, table, usd } from '../table';

interface Options {
  tenant?: string;
  json?: boolean;
}

const LEVELS = ['tenant', 'user', 'key'] as const;
const usdOf = (micros: number) => usd(micros / 1e6);
const changed = (c: CounterChange) =>
  c.tokens.before !== c.tokens.after || c.spendMicros.before !== c.spendMicros.after;

interface LevelSummary {
  level: string;
  counters: number;
  changed: number;
  tokensBefore: number;
  tokensAfter: number;
  spendBefore: number;
  spendAfter: number;
}

const SUMMARY: Column<LevelSummary>[] = [
  { header: 'Level', width: 6, value: (s) => s.level },
  { header: 'Counters', width: 8, value: (s) => String(s.counters), align: 'right' },
  { header: 'Corrected', width: 9, value: (s) => String(s.changed), align: 'right' },
  { header: 'Tokens before', width: 14, value: (s) => String(s.tokensBefore), align: 'right' },
  { header: 'Tokens after', width: 14, value: (s) => String(s.tokensAfter), align: 'right' },
  { header: 'Spend before (USD)', width: 18, value: (s) => usdOf(s.spendBefore), align: 'right' },
  { header: 'Spend after (USD)', width: 18, value: (s) => usdOf(s.spendAfter), align: 'right' },
];

const CHANGES: Column<CounterChange>[] = [
  { header: 'Level', width: 6, value: (c) => c.level },
  { header: 'ID', width: 36, value: (c) => c.id },
  { header: 'Tokens', width: 27, value: (c) => `${c.tokens.before} -> ${c.tokens.after}` },
  {
    header: 'Spend (USD)',
    width: 29,
    value: (c) => `${usdOf(c.spendMicros.before)} -> ${usdOf(c.spendMicros.after)}`,
  },
];

function summarise(report: RebuildReport): LevelSummary[] {
  return LEVELS.map((level) => {
    const of = report.counters.filter((c) => c.level === level);
    const sum = (f: (c: CounterChange) => number) => of.reduce((n, c) => n + f(c), 0);
    return {
      level,
      counters: of.length,
      changed: of.filter(changed).length,
      tokensBefore: sum((c) => c.tokens.before),
      tokensAfter: sum((c) => c.tokens.after),
      spendBefore: sum((c) => c.spendMicros.before),
      spendAfter: sum((c) => c.spendMicros.after),
    };
  });
}

/**
 * Rebuilds the quota counters (Redis) from the ledger, as the gateway does when it finds
 * them empty, and prints them before and after, per level.
 *
 * The quota module is loaded lazily, here only: Nest runs no lifecycle hooks for a lazily
 * loaded module, and the CLI must not run the gateway's quota start-up work (replaying
 * the ledger spool of DATA_DIR, rebuilding counters, flush timers) for every command.
 */
@CliCommand({
  name: 'quota:reconcile',
  description:
    'Rebuild the quota counters in Redis from the usage ledger (current reset periods); prints before/after per level.',
  redis: true,
})
export class QuotaReconcileCommand extends CommandRunner {
  constructor(
    private readonly lazy: LazyModuleLoader,
    private readonly config: AppConfig,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'only this tenant (default: every tenant)' })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--json', description: 'print the rebuild reports as JSON (every counter)' })
  parseJson(): boolean {
    return true;
  }

  async run(_args: string[], options: Options = {}): Promise<void> {
    if (!this.config.redis)
      throw new CliError(
        'REDIS_URL is not set (nor REDIS_CLUSTER_NODES, REDIS_SENTINELS): the quota counters live inside the gateway process, which rebuilds ' +
          'them from the ledger each time it starts; restart the gateway to reconcile them',
      );
    const tenant = options.tenant ? await this.resolve.tenant(options.tenant) : null;
    const quota = await this.lazy.load(() => QuotaModule, { logger: false });
    await quota.get(QuotaStore).waitReady(5000);
    const reports = await quota.get(ReconciliationService).rebuild(tenant?.id);

    if (options.json) {
      await this.out.json(reports);
      return;
    }
    const names = new Map<string, string>();
    if (tenant) names.set(tenant.id, tenant.name);
    const lines: string[] = [];
    for (const report of reports) {
      const name = names.get(report.tenantId) ?? (await this.resolve.tenant(report.tenantId)).name;
      const fixes = report.counters.filter(changed);
      lines.push(
        `Tenant ${name} (${report.tenantId}): ${plural(report.counters.length, 'counter')}, ${fixes.length} corrected`,
        '',
        ...table(SUMMARY, summarise(report)).map((l) => `  ${l}`),
      );
      if (fixes.length)
        lines.push('', '  Corrected counters:', ...table(CHANGES, fixes).map((l) => `  ${l}`));
      lines.push('');
    }
    lines.push(
      reports.length
        ? `Rebuilt the counters of ${plural(reports.length, 'tenant')} from the ledger.`
        : 'No tenants: nothing to rebuild.',
    );
    await this.out.lines(lines);
  }
}
