import { CommandRunner, Option } from 'nest-commander';
import { csvField } from '@app/observability';
import { AuditEntryResponse, AuditQuery, AuditService } from '@app/tenancy';
import { CliCommand } from '../cli-command';
import { CliError } from '../cli-error';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { validated } from '../validate';

interface Options {
  tenant?: string;
  action?: string;
  from?: string;
  to?: string;
  format?: string;
}

const CSV_COLUMNS: (keyof AuditEntryResponse)[] = [
  'id',
  'created_at',
  'tenant_id',
  'actor_type',
  'actor_id',
  'actor_label',
  'action',
  'target_type',
  'target_id',
  'target_label',
  'before',
  'after',
  'request_id',
  'ip',
];

/** The audit trail (newest first) as JSON lines or CSV, streamed page by page. Read only. */
@CliCommand({
  name: 'audit:export',
  description: 'Export the audit log (newest first) as JSON lines or CSV. Read only.',
})
export class AuditExportCommand extends CommandRunner {
  constructor(
    private readonly audit: AuditService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'only this tenant (default: every tenant)' })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--action <action>', description: 'an action (api_key.update) or a family (api_key.*)' })
  parseAction(value: string): string {
    return value;
  }

  @Option({ flags: '--from <date>', description: 'from (inclusive), ISO 8601' })
  parseFrom(value: string): string {
    return value;
  }

  @Option({ flags: '--to <date>', description: 'to (exclusive), ISO 8601' })
  parseTo(value: string): string {
    return value;
  }

  @Option({
    flags: '--format <jsonl|csv>',
    description: 'output format (default jsonl: one JSON object per line)',
  })
  parseFormat(value: string): string {
    return value;
  }

  async run(_args: string[], options: Options): Promise<void> {
    const format = options.format ?? 'jsonl';
    if (format !== 'jsonl' && format !== 'csv')
      throw new CliError(`--format must be jsonl or csv (got "${format}")`);
    const q = validated(
      AuditQuery,
      { action: options.action, from: options.from, to: options.to },
      { action: '--action', from: '--from', to: '--to' },
    );
    const tenant = options.tenant ? await this.resolve.tenant(options.tenant) : undefined;
    if (format === 'csv') await this.out.line(CSV_COLUMNS.join(','));
    let batch: string[] = [];
    for await (const entry of this.audit.export({
      tenantId: tenant?.id ?? null,
      action: q.action,
      from: q.from ? new Date(q.from) : undefined,
      to: q.to ? new Date(q.to) : undefined,
    })) {
      batch.push(
        format === 'csv' ? CSV_COLUMNS.map((c) => csvField(entry[c])).join(',') : JSON.stringify(entry),
      );
      if (batch.length >= 500) {
        await this.out.lines(batch);
        batch = [];
      }
    }
    await this.out.lines(batch);
  }
}
