import { randomBytes } from 'node:crypto';
import { createDatabase } from '../harness/app';
import { withClient } from '../harness/servers';
import { ensureCliBuilt, runCli, tableChecksums, tempDataDir, writeCounters } from './cli-harness';

const hex = (n: number) => randomBytes(n).toString('hex');

interface Seeded {
  acme: { id: string; name: string };
  beta: { id: string; name: string };
  clean: { id: string; name: string };
  legacyAcme: string[];
  legacyBeta: string[];
  upgraded: string[];
  /** Keys whose permissions hold legacy names (not endpoint scopes). */
  oldPermissions: string[];
}

/** Two tenants with legacy keys (no lookup hash) and upgraded ones, and a tenant with none. */
async function seed(url: string): Promise<Seeded> {
  return withClient(url, async (c) => {
    const tenant = async (name: string) =>
      (await c.query<{ id: string }>(`INSERT INTO tenants (name) VALUES ($1) RETURNING id`, [name])).rows[0]
        .id;
    const acme = { name: `acme-${hex(3)}`, id: '' };
    const beta = { name: `beta-${hex(3)}`, id: '' };
    const clean = { name: `clean-${hex(3)}`, id: '' };
    acme.id = await tenant(acme.name);
    beta.id = await tenant(beta.name);
    clean.id = await tenant(clean.name);
    const owner = (
      await c.query<{ id: string }>(
        `INSERT INTO users (tenant_id, email, role) VALUES ($1, $2, 'member') RETURNING id`,
        [acme.id, `owner-${hex(3)}@example.test`],
      )
    ).rows[0].id;
    const key = async (tenantId: string, name: string, upgraded: boolean, userId: string | null = null) =>
      (
        await c.query<{ id: string }>(
          `INSERT INTO api_keys (tenant_id, user_id, name, key_hash, key_prefix, key_lookup_hash, last_used_at, created_at)
           VALUES ($1, $2, $3, '$2b$04$notarealbcrypthashnotarealbcrypthashnotarealbcryp', $4, $5,
                   CASE WHEN random() < 0.5 THEN now() END, now() - random() * interval '30 days')
           RETURNING id`,
          [tenantId, userId, name, `sk-${hex(5)}`.slice(0, 12), upgraded ? hex(32) : null],
        )
      ).rows[0].id;
    const legacyAcme = [
      await key(acme.id, 'Production API', false),
      await key(acme.id, 'Development Key', false),
      await key(acme.id, 'Test Integration', false),
      await key(acme.id, 'Owned legacy', false, owner),
    ];
    const legacyBeta = [await key(beta.id, 'beta one', false), await key(beta.id, 'beta two', false)];
    const upgraded = [
      await key(acme.id, 'new 1', true),
      await key(acme.id, 'new 2', true, owner),
      await key(beta.id, 'new 3', true),
      await key(clean.id, 'new 4', true),
    ];
    // Imported / legacy permission names: kept, but not scopes (they restrict nothing).
    await c.query(`UPDATE api_keys SET permissions = '["read", "write"]' WHERE id = $1`, [legacyAcme[0]]);
    await c.query(`UPDATE api_keys SET permissions = '["chat", "admin"]' WHERE id = $1`, [upgraded[0]]);
    await c.query(`UPDATE api_keys SET permissions = '["chat"]' WHERE id = $1`, [upgraded[1]]);
    const oldPermissions = [legacyAcme[0], upgraded[0]];
    return { acme, beta, clean, legacyAcme, legacyBeta, upgraded, oldPermissions };
  });
}

interface ReportJson {
  tenant: { id: string; name: string } | null;
  count: number;
  keys: { id: string; name: string; key_prefix: string; user_id: string | null; tenant_name: string }[];
  ignored_permissions: { count: number; keys: { id: string; ignored: string[]; scopes: string[] | null }[] };
}

describe('keys:backfill-report (compiled CLI, real PostgreSQL)', () => {
  let url: string;
  let env: Record<string, string>;
  let s: Seeded;

  beforeAll(async () => {
    await ensureCliBuilt();
    url = await createDatabase();
    env = { DATABASE_URL: url, DATA_DIR: tempDataDir() };
    s = await seed(url);
  }, 180_000);

  it('lists exactly the keys without a lookup hash, then what to do', async () => {
    const r = await runCli(['keys:backfill-report'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Found 6 API keys without a lookup hash\.$/m);
    expect(r.stdout).toMatch(
      /Key ID +\| Name +\| Key Prefix +\| User ID +\| Tenant +\| Last used \(UTC\) +\| Created \(UTC\)/,
    );
    for (const id of [...s.legacyAcme, ...s.legacyBeta]) expect(r.stdout).toContain(id);
    // the legacy-key table ends where the permissions section (tested below) starts
    const [legacyPart] = r.stdout.split(/^\d+ API keys? hold permission names/m);
    for (const id of s.upgraded) expect(legacyPart).not.toContain(id);
    const rows = legacyPart.split('\n').filter((l) => /^[0-9a-f]{8}-/.test(l));
    expect(rows).toHaveLength(6);
    expect(r.stdout).toContain('(no owner)');
    expect(r.stdout).toContain('POST /api/v1/api-keys/{key_id}/regenerate');
    expect(r.stdout).toContain('DELETE /auth/key/{key_id}');
    expect(r.stdout).toMatch(/use the key once/i);
  });

  it('--json parses and holds the same keys; --tenant takes a name or an id', async () => {
    const all = await runCli(['keys:backfill-report', '--json'], { env });
    expect(all.code).toBe(0);
    const report = JSON.parse(all.stdout) as ReportJson;
    expect(report.count).toBe(6);
    expect(report.tenant).toBeNull();
    expect(report.keys.map((k) => k.id).sort()).toEqual([...s.legacyAcme, ...s.legacyBeta].sort());
    // Never a hash of any kind.
    expect(all.stdout).not.toMatch(/key_hash|lookup_hash|\$2b\$/);

    const byName = JSON.parse(
      (await runCli(['keys:backfill-report', '--json', '--tenant', s.acme.name.toUpperCase()], { env }))
        .stdout,
    ) as ReportJson;
    expect(byName.tenant).toEqual({ id: s.acme.id, name: s.acme.name });
    expect(byName.keys.map((k) => k.id).sort()).toEqual([...s.legacyAcme].sort());
    expect(byName.keys.every((k) => k.tenant_name === s.acme.name)).toBe(true);

    const byId = JSON.parse(
      (await runCli(['keys:backfill-report', '--json', '--tenant', s.beta.id], { env })).stdout,
    ) as ReportJson;
    expect(byId.count).toBe(2);
    expect(byId.keys.map((k) => k.id).sort()).toEqual([...s.legacyBeta].sort());
  });

  it('--fail-if-any exits 2 when keys lack the hash, 0 when none do (and says so)', async () => {
    const found = await runCli(['keys:backfill-report', '--fail-if-any', '--tenant', s.beta.name], { env });
    expect(found.code).toBe(2);
    expect(found.stdout).toMatch(/^Found 2 API keys/m);

    const none = await runCli(['keys:backfill-report', '--fail-if-any', '--tenant', s.clean.name], { env });
    expect(none.code).toBe(0);
    expect(none.stdout).toBe(
      `All API keys in tenant ${s.clean.name} (${s.clean.id}) have a lookup hash: nothing to backfill.\n`,
    );
    const json = JSON.parse(
      (await runCli(['keys:backfill-report', '--json', '--tenant', s.clean.id], { env })).stdout,
    ) as ReportJson;
    expect(json).toEqual({
      tenant: { id: s.clean.id, name: s.clean.name },
      count: 0,
      keys: [],
      ignored_permissions: { count: 0, keys: [] },
    });
  });

  it('says which keys hold permission names that are not scopes, and that they restrict nothing', async () => {
    const r = await runCli(['keys:backfill-report', '--tenant', s.acme.name], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^2 API keys in tenant .* hold permission names that are not endpoint scopes/m);
    expect(r.stdout).toMatch(/restrict nothing/);
    const lines = r.stdout.split('\n');
    const legacyLine = lines.filter((l) => l.startsWith(s.oldPermissions[0]));
    expect(legacyLine.some((l) => /read, write\s+\|\s+every endpoint/.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith(s.oldPermissions[1]) && /admin\s+\|\s+chat/.test(l))).toBe(true);

    const json = JSON.parse(
      (await runCli(['keys:backfill-report', '--json', '--tenant', s.acme.id], { env })).stdout,
    ) as ReportJson;
    expect(json.ignored_permissions.count).toBe(2);
    const byId = new Map(json.ignored_permissions.keys.map((k) => [k.id, k]));
    expect(byId.get(s.oldPermissions[0])).toMatchObject({ ignored: ['read', 'write'], scopes: null });
    expect(byId.get(s.oldPermissions[1])).toMatchObject({ ignored: ['admin'], scopes: ['chat'] });
  });

  it('an unknown tenant is one line and exit 1', async () => {
    const r = await runCli(['keys:backfill-report', '--tenant', 'no-such-tenant'], { env });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('error: no tenant "no-such-tenant" (give its id or its name)\n');
  });

  it('leaves the database unchanged: row checksums and the server tuple counters', async () => {
    const before = await tableChecksums(url);
    const writesBefore = await writeCounters(url);
    for (const args of [[], ['--json'], ['--tenant', s.acme.name], ['--fail-if-any']])
      await runCli(['keys:backfill-report', ...args], { env });
    expect(await writeCounters(url)).toBe(writesBefore);
    expect(await tableChecksums(url)).toEqual(before);
  });
});
