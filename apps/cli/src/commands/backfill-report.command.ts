import { CommandRunner, Option } from 'nest-commander';
import { IgnoredPermissionsView, KEY_SCOPES, LegacyKeysService, LegacyKeyView } from '@app/api-keys';
import { CliCommand } from '../cli-command';
import { EXIT } from '../cli-error';
import { CliOutput } from '../cli-output';
import { Resolvers } from '../resolvers';
import { Column, headerLines, plural, rowLine, when } from '../table';

interface Options {
  json?: boolean;
  tenant?: string;
  failIfAny?: boolean;
}

const COLUMNS: Column<LegacyKeyView>[] = [
  { header: 'Key ID', width: 36, value: (k) => k.id },
  { header: 'Name', width: 24, value: (k) => k.name },
  { header: 'Key Prefix', width: 12, value: (k) => k.key_prefix },
  { header: 'User ID', width: 36, value: (k) => k.user_id ?? '(no owner)' },
  { header: 'Tenant', width: 16, value: (k) => k.tenant_name },
  { header: 'Last used (UTC)', width: 16, value: (k) => when(k.last_used_at) },
  { header: 'Created (UTC)', width: 16, value: (k) => when(k.created_at) },
];

const IGNORED_COLUMNS: Column<IgnoredPermissionsView>[] = [
  { header: 'Key ID', width: 36, value: (k) => k.id },
  { header: 'Name', width: 24, value: (k) => k.name },
  { header: 'Tenant', width: 16, value: (k) => k.tenant_name },
  { header: 'Ignored names', width: 24, value: (k) => k.ignored.join(', ') },
  { header: 'May call', width: 24, value: (k) => k.scopes?.join(', ') ?? 'every endpoint' },
];

const ADVICE = `
What to do:
  These keys still work: the gateway verifies them with the bcrypt fallback, which is
  slower and bypasses the lookup-hash index and caches. Nothing needs to be done by hand:
  - Simply use the key once. On its first successful use the gateway writes its lookup
    hash, and from then on it takes the fast path like any other key.
  - Or replace it. Regenerate it (same id, new key; the old key can keep working for a
    grace period):
      POST /api/v1/api-keys/{key_id}/regenerate   {"grace_period_seconds": 3600}
    or create a new key, update your applications, then delete the old one:
      POST /auth/key/generate   then   DELETE /auth/key/{key_id}

Run this report again to follow progress; it only reads (one READ ONLY transaction).`;

/** Batches fetched from the cursor; also how often the progress line moves. */
const BATCH = 1000;

/**
 * The backfill tool of the key-lookup migration (../shared/seeds/004): which keys still
 * lack a lookup hash. Reads one snapshot in a READ ONLY transaction and streams the rows.
 */
@CliCommand({
  name: 'keys:backfill-report',
  description: 'List the API keys without a lookup hash (legacy keys) and what to do about them. Read only.',
})
export class BackfillReportCommand extends CommandRunner {
  constructor(
    private readonly legacy: LegacyKeysService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--json', description: 'print JSON: {tenant, count, keys: [...]}' })
  parseJson(): boolean {
    return true;
  }

  @Option({ flags: '--tenant <id|name>', description: 'only the keys of this tenant' })
  parseTenant(value: string): string {
    return value;
  }

  @Option({
    flags: '--fail-if-any',
    description: `exit with code ${EXIT.found} when any key lacks a lookup hash (for scripts and CI)`,
  })
  parseFailIfAny(): boolean {
    return true;
  }

  async run(_args: string[], options: Options = {}): Promise<void> {
    const tenant = options.tenant ? await this.resolve.tenant(options.tenant) : null;
    const scope = tenant ? ` in tenant ${tenant.name} (${tenant.id})` : '';
    let total = 0;
    let seen = 0;
    const progress = () => this.out.progress(`keys:backfill-report: ${seen} / ${total} keys`);

    if (options.json) {
      let first = true;
      await this.legacy.backfillReport(
        tenant?.id ?? null,
        {
          count: async (n) => {
            total = n;
            const head = { tenant: tenant ? { id: tenant.id, name: tenant.name } : null, count: n };
            await this.out.write(`${JSON.stringify(head).slice(0, -1)},"keys":[`);
          },
          rows: async (rows) => {
            const chunk = rows.map((r) => JSON.stringify(r)).join(',\n');
            await this.out.write(`${first ? '\n' : ',\n'}${chunk}`);
            first = false;
            seen += rows.length;
            progress();
          },
        },
        BATCH,
      );
      const ignored = await this.legacy.ignoredPermissions(tenant?.id ?? null);
      await this.out.write(`${first ? '' : '\n'}],"ignored_permissions":${JSON.stringify(ignored)}}\n`);
    } else {
      await this.legacy.backfillReport(
        tenant?.id ?? null,
        {
          count: async (n) => {
            total = n;
            if (n === 0) {
              await this.out.line(`All API keys${scope} have a lookup hash: nothing to backfill.`);
              return;
            }
            await this.out.lines([
              `Found ${plural(n, 'API key')}${scope} without a lookup hash.`,
              '',
              'Keys that take the slow (bcrypt) path until they are used once or regenerated:',
              ...headerLines(COLUMNS),
            ]);
          },
          rows: async (rows) => {
            await this.out.lines(rows.map((r) => rowLine(COLUMNS, r)));
            seen += rows.length;
            progress();
          },
        },
        BATCH,
      );
      if (total > 0) await this.out.line(ADVICE);
      await this.printIgnoredPermissions(tenant?.id ?? null, scope);
    }
    this.out.clearProgress();
    if (options.failIfAny && total > 0) this.out.exitCode = EXIT.found;
  }

  /** Keys holding permission names that are not endpoint scopes: said plainly, they restrict nothing. */
  private async printIgnoredPermissions(tenantId: string | null, scope: string): Promise<void> {
    const { count, keys } = await this.legacy.ignoredPermissions(tenantId);
    if (count === 0) return;
    await this.out.lines([
      '',
      `${plural(count, 'API key')}${scope} hold permission names that are not endpoint scopes ` +
        `(${KEY_SCOPES.join(', ')}).`,
      'Those names are kept as stored but restrict nothing: each key below may call every endpoint its',
      'scopes allow (all of them when it has no scope). To restrict a key, PATCH /api/v1/api-keys/{key_id}',
      'with {"permissions": ["chat", ...]}.',
      ...headerLines(IGNORED_COLUMNS),
      ...keys.map((k) => rowLine(IGNORED_COLUMNS, k)),
      ...(count > keys.length
        ? [`... and ${count - keys.length} more (--json lists the same first ${keys.length})`]
        : []),
    ]);
  }
}
