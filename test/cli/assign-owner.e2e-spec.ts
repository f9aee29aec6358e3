import { randomBytes } from 'node:crypto';
import { createDatabase } from '../harness/app';
import { withClient } from '../harness/servers';
import { ensureCliBuilt, runCli, tableChecksums, tempDataDir, writeCounters } from './cli-harness';

const hex = (n: number) => randomBytes(n).toString('hex');

interface KeyRow {
  id: string;
  tenant_id: string;
  user_id: string | null;
  current_quota_usage: string;
  spend: string;
  quota_limit: string | null;
  updated_at: Date;
}

describe('keys:assign-owner (compiled CLI, real PostgreSQL)', () => {
  let url: string;
  let env: Record<string, string>;
  const ids = {
    acme: '',
    beta: '',
    owner: '',
    ownerEmail: `owner-${hex(3)}@example.test`,
    other: '',
    disabled: '',
    betaUser: '',
    ownerless: [] as string[],
    owned: [] as string[],
    betaOwnerless: [] as string[],
  };
  const keys = (): Promise<KeyRow[]> =>
    withClient(url, async (c) => (await c.query<KeyRow>(`SELECT * FROM api_keys ORDER BY id`)).rows);

  beforeAll(async () => {
    await ensureCliBuilt();
    url = await createDatabase();
    env = { DATABASE_URL: url, DATA_DIR: tempDataDir() };
    await withClient(url, async (c) => {
      const one = async (sql: string, params: unknown[]) =>
        (await c.query<{ id: string }>(sql, params)).rows[0].id;
      ids.acme = await one(`INSERT INTO tenants (name) VALUES ($1) RETURNING id`, [`acme-${hex(3)}`]);
      ids.beta = await one(`INSERT INTO tenants (name) VALUES ($1) RETURNING id`, [`beta-${hex(3)}`]);
      const user = (tenant: string, email: string, status = 'active') =>
        one(`INSERT INTO users (tenant_id, email, role, status) VALUES ($1, $2, 'member', $3) RETURNING id`, [
          tenant,
          email,
          status,
        ]);
      ids.owner = await user(ids.acme, ids.ownerEmail);
      ids.other = await user(ids.acme, `other-${hex(3)}@example.test`);
      ids.disabled = await user(ids.acme, `disabled-${hex(3)}@example.test`, 'disabled');
      ids.betaUser = await user(ids.beta, `beta-${hex(3)}@example.test`);
      const key = (tenant: string, userId: string | null, usage: number, legacy: boolean) =>
        one(
          `INSERT INTO api_keys (tenant_id, user_id, name, key_hash, key_prefix, key_lookup_hash,
                                 current_quota_usage, spend, quota_limit)
           VALUES ($1, $2, $3, 'x', $4, $5, $6::bigint, $6::bigint / 1000.0, CASE WHEN $6::bigint > 100 THEN 5000 END) RETURNING id`,
          [tenant, userId, `key-${hex(2)}`, `sk-${hex(4)}`, legacy ? null : hex(32), usage],
        );
      ids.ownerless = [
        await key(ids.acme, null, 0, true),
        await key(ids.acme, null, 1234, true),
        await key(ids.acme, null, 50, false),
      ];
      ids.owned = [await key(ids.acme, ids.other, 77, false), await key(ids.acme, ids.owner, 5, true)];
      ids.betaOwnerless = [await key(ids.beta, null, 9, true)];
    });
  }, 180_000);

  it('dry run (the default) lists the ownerless keys of the tenant and changes nothing', async () => {
    const before = await tableChecksums(url);
    const r = await runCli(['keys:assign-owner', '--user', ids.ownerEmail], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Dry run: 3 ownerless API keys in tenant acme-/m);
    for (const id of ids.ownerless) expect(r.stdout).toContain(id);
    for (const id of [...ids.owned, ...ids.betaOwnerless]) expect(r.stdout).not.toContain(id);
    expect(r.stdout).toContain('1234');
    expect(r.stdout).toContain('Nothing was changed. Run again with --apply');

    const json = JSON.parse(
      (await runCli(['keys:assign-owner', '--user', ids.owner, '--tenant', ids.acme, '--json'], { env }))
        .stdout,
    ) as { applied: boolean; keys: { id: string }[] };
    expect(json.applied).toBe(false);
    expect(json.keys.map((k) => k.id).sort()).toEqual([...ids.ownerless].sort());
    expect(await tableChecksums(url)).toEqual(before);
  });

  it('--apply changes exactly the ownerless keys of that tenant, once; a second --apply changes nothing', async () => {
    const before = await keys();
    const writes = await writeCounters(url);
    const r = await runCli(['keys:assign-owner', '--user', ids.ownerEmail, '--apply'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Assigned 3 API keys in tenant acme-.* to owner-/m);
    // The server counted exactly three updated rows (and the counters see a CLI's writes).
    expect((await writeCounters(url)) - writes).toBe(3);

    const after = await keys();
    const byId = new Map(before.map((k) => [k.id, k]));
    for (const k of after) {
      const old = byId.get(k.id)!;
      if (ids.ownerless.includes(k.id)) {
        expect(k.user_id).toBe(ids.owner);
        expect(k.current_quota_usage).toBe('0');
        expect(Number(k.spend)).toBe(0);
        expect(k.quota_limit).toBe(old.quota_limit); // limits are kept
      } else {
        expect(k).toEqual(old);
      }
    }

    const checksum = await tableChecksums(url);
    const again = await runCli(['keys:assign-owner', '--user', ids.ownerEmail, '--apply'], { env });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^No ownerless API keys in tenant acme-.*: nothing to change\.$/m);
    expect(await tableChecksums(url)).toEqual(checksum);
  });

  it('the owner must belong to the tenant, and be active', async () => {
    const checksum = await tableChecksums(url);
    const wrongTenant = await runCli(
      ['keys:assign-owner', '--user', ids.owner, '--tenant', ids.beta, '--apply'],
      {
        env,
      },
    );
    expect(wrongTenant.code).toBe(1);
    expect(wrongTenant.stderr).toMatch(
      /^error: user ".*" belongs to another tenant \(.*\), not to beta-.*\n$/,
    );

    const disabled = await runCli(['keys:assign-owner', '--user', ids.disabled, '--tenant', ids.beta], {
      env,
    });
    expect(disabled.code).toBe(1);

    const noUser = await runCli(['keys:assign-owner', '--user', 'nobody@example.test'], { env });
    expect(noUser.stderr).toBe('error: no user "nobody@example.test" (give their id or email)\n');
    expect(await tableChecksums(url)).toEqual(checksum);

    // beta's ownerless key waits for an owner of beta; a disabled owner is refused.
    await withClient(url, (c) =>
      c.query(`UPDATE users SET status = 'disabled' WHERE id = $1`, [ids.betaUser]),
    );
    const refused = await runCli(['keys:assign-owner', '--user', ids.betaUser, '--apply'], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error: The owner is disabled/);
    await withClient(url, (c) => c.query(`UPDATE users SET status = 'active' WHERE id = $1`, [ids.betaUser]));
    const ok = await runCli(['keys:assign-owner', '--user', ids.betaUser, '--apply', '--json'], { env });
    expect((JSON.parse(ok.stdout) as { keys: { id: string }[] }).keys.map((k) => k.id)).toEqual(
      ids.betaOwnerless,
    );
  });
});
