import { createDatabase } from '../harness/app';
import { withClient } from '../harness/servers';
import { ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

/** Splits one CSV document (RFC 4180 quoting) into rows of cells. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === '"' && text[i + 1] === '"') {
      cell += '"';
      i++;
    } else if (c === '"') {
      quoted = !quoted;
    } else if (!quoted && c === ',') {
      row.push(cell);
      cell = '';
    } else if (!quoted && c === '\n') {
      rows.push([...row, cell]);
      row = [];
      cell = '';
    } else {
      cell += c;
    }
  }
  return rows;
}

/**
 * audit:export on the compiled CLI: what the CLI itself changes is audited with the
 * operator as actor, the export streams JSON lines or CSV that parses back, filters
 * apply, and bad input is one error line.
 */
describe('audit:export (compiled CLI)', () => {
  let env: Record<string, string>;
  let tenantId: string;

  beforeAll(async () => {
    await ensureCliBuilt();
    env = { DATABASE_URL: await createDatabase(), DATA_DIR: tempDataDir() };
    const created = await runCli(['tenants:create', 'audit-co', '--json'], { env });
    expect(created.code).toBe(0);
    tenantId = JSON.parse(created.stdout).id;
    const other = await runCli(['tenants:create', 'other-co'], { env });
    expect(other.code).toBe(0);
    const user = await runCli(
      [
        'users:create',
        '--tenant',
        'audit-co',
        '--email',
        '=cmd@audit.test',
        '--role',
        'admin',
        '--password-stdin',
      ],
      { env, input: 'a-long-password-1\n' },
    );
    expect(user.stderr).toBe('');
    const key = await runCli(['keys:create', '--tenant', 'audit-co', '--name', 'ci'], { env });
    expect(key.code).toBe(0);
  }, 180_000);

  it('exports JSON lines, newest first, with the CLI operator as actor and no secret', async () => {
    const r = await runCli(['audit:export', '--tenant', 'audit-co'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const entries = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    // keys:create without --user: the key belongs to the tenant's system user, created then.
    expect(entries.map((e) => e.action)).toEqual([
      'api_key.create',
      'user.create',
      'user.create',
      'tenant.create',
    ]);
    expect(entries[1].after).toMatchObject({ role: 'system' });
    expect(entries[2].after).toMatchObject({ role: 'admin', email: '=cmd@audit.test' });
    for (const e of entries) {
      expect(e).toMatchObject({ tenant_id: tenantId, actor_type: 'cli', request_id: null, ip: null });
      expect(e.actor_label).toMatch(/^cli \(.+\)$/);
    }
    expect(r.stdout).not.toMatch(/a-long-password-1|"key":|hash|\$2[aby]\$/);

    const all = await runCli(['audit:export'], { env });
    expect(all.stdout.trim().split('\n')).toHaveLength(5); // other-co's tenant.create too
    const tenantsOnly = await runCli(['audit:export', '--action', 'tenant.*'], { env });
    expect(tenantsOnly.stdout.trim().split('\n')).toHaveLength(2);
    const none = await runCli(['audit:export', '--from', '2000-01-01', '--to', '2000-01-02'], { env });
    expect(none).toMatchObject({ code: 0, stdout: '' });
  });

  it('exports CSV that parses back to the same entries; a formula-looking cell is defused', async () => {
    // A failed login's email is typed by anyone: it must not run as a spreadsheet formula.
    await withClient(env.DATABASE_URL, (c) =>
      c.query(
        `INSERT INTO audit_log (tenant_id, actor_type, actor_label, action, target_type)
         VALUES ($1, 'anonymous', '=HYPERLINK("http://x.test","y")', 'auth.login_failed', 'user')`,
        [tenantId],
      ),
    );
    const json = await runCli(['audit:export', '--tenant', tenantId], { env });
    const csv = await runCli(['audit:export', '--tenant', tenantId, '--format', 'csv'], { env });
    expect(csv.code).toBe(0);
    const [header, ...rows] = parseCsv(csv.stdout);
    expect(header).toEqual([
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
    ]);
    const entries = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((r) => r[header.indexOf('id')])).toEqual(entries.map((e) => e.id));
    const afters = rows.map((r) => r[header.indexOf('after')]).filter(Boolean);
    expect(afters.map((a) => JSON.parse(a) as unknown)).toEqual(
      entries.filter((e) => e.after).map((e) => e.after),
    );
    const labels = rows.map((r) => r[header.indexOf('actor_label')]);
    expect(labels[0]).toBe(`'=HYPERLINK("http://x.test","y")`);
    expect(rows.flat().some((cell) => cell.startsWith('='))).toBe(false);
  });

  it('is read only and refuses bad input with one line', async () => {
    const count = () =>
      withClient(
        env.DATABASE_URL,
        async (c) => (await c.query('SELECT count(*)::int AS n FROM audit_log')).rows[0].n,
      );
    const before = await count();
    await runCli(['audit:export'], { env });
    expect(await count()).toBe(before);

    for (const [args, message] of [
      [['--format', 'xml'], /^error: --format must be jsonl or csv \(got "xml"\)\n$/],
      [['--from', 'yesterday'], /^error: --from must be an ISO 8601 date or date-time\n$/],
      [['--action', 'DROP'], /^error: --action must look like api_key.update or api_key.\*\n$/],
    ] as const) {
      const r = await runCli(['audit:export', ...args], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
