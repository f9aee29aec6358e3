import request from 'supertest';
import { createDatabase, MASTER_KEY } from '../harness/app';
import { createTenantWithAdmin, createUser, masterIn, TenantSession } from '../harness/factories';
import { withClient } from '../harness/servers';
import { Instance, insertKey, startInstance } from '../quota/harness';
import { ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

/**
 * `usage` on the compiled CLI against the ledger a gateway reads: the table's totals, and
 * `--csv` byte for byte the CSV of GET /api/v1/usage?format=csv (one usageCsv); bad input is
 * one error line naming the flag.
 */
describe('usage (compiled CLI)', () => {
  let db: string;
  let env: Record<string, string>;
  let inst: Instance;
  let a: TenantSession;
  const day = '2026-11-20';
  const range = { from: '2026-11-15T00:00:00Z', to: '2026-11-25T00:00:00Z' };

  beforeAll(async () => {
    await ensureCliBuilt();
    db = await createDatabase();
    env = { DATABASE_URL: db, DATA_DIR: tempDataDir(), MASTER_KEY };
    inst = await startInstance({ databaseUrl: db });
    a = await createTenantWithAdmin(inst.url, `usage-co-${Date.now()}`);
    const m = await createUser(inst.url, a.tenantId, 'member');
    const k1 = await insertKey(db, a.tenantId, a.admin.id);
    const k2 = await insertKey(db, a.tenantId, m.id);
    // Ledger rows as the gateway writes them; a model name a spreadsheet would run as a formula.
    const row = (key: string, user: string, model: string, at: string, p: number, c: number, cost: number) =>
      withClient(db, (cl) =>
        cl.query(
          `INSERT INTO usage_records (id, tenant_id, user_id, api_key_id, model, provider, prompt_tokens,
                                      completion_tokens, cost, status, created_at)
           VALUES (gen_random_uuid(), $1, $2, $3, $4, 'fake', $5, $6, $7, 'success', $8)`,
          [a.tenantId, user, key, model, p, c, cost, at],
        ),
      );
    await row(k1, a.admin.id, 'gpt-a', `${day}T10:00:00Z`, 100, 50, 0.25);
    await row(k1, a.admin.id, '=cmd, "x"', `${day}T11:00:00Z`, 10, 5, 0.000123);
    await row(k2, m.id, 'gpt-a', '2026-11-21T09:00:00Z', 7, 3, 0.5);
    await row(k2, m.id, 'gpt-a', '2026-10-01T09:00:00Z', 1000, 1000, 9); // outside the range
  }, 180_000);

  afterAll(() => inst?.close());

  it.each([
    [['--group-by', 'model'], { group_by: 'model' }],
    [['--group-by', 'day', '--split-by', 'user'], { group_by: 'day', split_by: 'user' }],
  ])('usage %j --csv is the API CSV, byte for byte', async (flags, query) => {
    const api = await request(inst.url)
      .get('/api/v1/usage')
      .query({ ...range, ...query, format: 'csv' })
      .set(masterIn(a.tenantId))
      .expect(200);
    const cli = await runCli(
      ['usage', '--tenant', a.name, '--from', range.from, '--to', range.to, ...flags, '--csv'],
      { env },
    );
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toBe(api.text);
    expect(cli.stdout.split('\r\n').length).toBeGreaterThan(2);
  });

  it('prints a table with the totals of the range; --json is the API body', async () => {
    const cli = await runCli(['usage', '--tenant', a.tenantId, '--from', range.from, '--to', range.to], {
      env,
    });
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const lines = cli.stdout.split('\n');
    expect(lines[0]).toBe(
      `Usage of tenant ${a.name} (${a.tenantId}) from 2026-11-15T00:00:00.000Z to 2026-11-25T00:00:00.000Z, by day:`,
    );
    expect(lines.slice(2, 4).join('\n')).toMatch(/^Day\s+\| Requests \|/);
    expect(lines.find((l) => l.startsWith('2026-11-20'))).toMatch(
      /^2026-11-20 \|\s+2 \|\s+110 \|\s+55 \|\s+165 \|\s+0\.250123$/,
    );
    expect(cli.stdout).toContain('Total: 3 requests, 175 tokens (117 prompt, 58 completion), $0.750123');

    const json = await runCli(
      ['usage', '--tenant', a.name, '--from', range.from, '--to', range.to, '--json'],
      { env },
    );
    const api = await request(inst.url)
      .get('/api/v1/usage')
      .query(range)
      .set(masterIn(a.tenantId))
      .expect(200);
    expect(JSON.parse(json.stdout)).toEqual(api.body);
  });

  it.each([
    [
      ['--group-by', 'week'],
      /^error: --group-by must be one of the following values: key, user, model, day\n$/,
    ],
    [['--from', '2026-02-01', '--to', '2026-01-01'], /^error: --from must be before to\n$/],
    [['--group-by', 'model', '--split-by', 'key'], /^error: --split-by needs group_by=day\n$/],
    [['--csv', '--json'], /^error: --csv and --json exclude each other\n$/],
  ])('bad input %j: one error line, exit 1', async (flags, message) => {
    const r = await runCli(['usage', '--tenant', a.name, ...flags], { env });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
  });
});
