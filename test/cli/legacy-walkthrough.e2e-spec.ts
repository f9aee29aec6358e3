import * as bcrypt from 'bcrypt';
import request from 'supertest';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { loadConfig } from '@app/config';
import { dataSourceOptions, MIGRATIONS } from '@app/database';
import { createTestApp } from '../harness/app';
import { dbUrl, withClient } from '../harness/servers';
import { ensureCliBuilt, runCli, tableChecksums, tempDataDir } from './cli-harness';

const N = 6;
const M = 4;

interface ReportJson {
  count: number;
  keys: { id: string; key_prefix: string }[];
}

/**
 * The upgrade story of the seeds, end to end: keys stored the legacy way (bcrypt and a
 * display prefix only) -> the schema migrations -> the backfill report -> keys used
 * through the gateway upgrade themselves -> the report shrinks accordingly.
 */
describe('legacy upgrade walkthrough (compiled CLI + the gateway, real PostgreSQL)', () => {
  let url: string;
  let env: Record<string, string>;
  const plain = new Map<string, string>(); // key id -> plaintext key

  beforeAll(async () => {
    await ensureCliBuilt();
    const admin = process.env.TEST_PG_ADMIN_URL!;
    const name = `t_legacy_${randomBytes(4).toString('hex')}`;
    await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
    url = dbUrl(admin, name);
    env = { DATABASE_URL: url, DATA_DIR: tempDataDir() };

    // Migrated only to the legacy step: tenants + users, then api_keys as the old system had it.
    const config = loadConfig({
      DATA_DIR: env.DATA_DIR,
      MASTER_KEY: 'm'.repeat(32),
      JWT_SECRET: 'j'.repeat(40),
    });
    const ds = new DataSource({ ...dataSourceOptions(config, url), migrations: MIGRATIONS.slice(0, 2) });
    await ds.initialize();
    await ds.runMigrations({ transaction: 'each' });
    await ds.destroy();

    await withClient(url, async (c) => {
      const tenant = (
        await c.query<{ id: string }>(`INSERT INTO tenants (name) VALUES ('legacy-co') RETURNING id`)
      ).rows[0].id;
      for (let i = 0; i < N; i++) {
        const key = `sk-${randomBytes(24).toString('base64url')}`;
        const { rows } = await c.query<{ id: string }>(
          `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix) VALUES ($1, $2, $3, $4) RETURNING id`,
          [tenant, `legacy key ${i + 1}`, await bcrypt.hash(key, 4), key.slice(0, 12)],
        );
        plain.set(rows[0].id, key);
      }
    });
  }, 180_000);

  it(`report refuses the old schema -> migrate -> report shows ${N} -> ${M} used through the gateway -> report shows ${N - M}`, async () => {
    // The report never migrates: on the legacy schema it says what to run, and writes nothing.
    const checksum = await tableChecksums(url);
    const refused = await runCli(['keys:backfill-report'], { env });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(
      /^error: the database schema is behind: \d+ migration\(s\) pending \(ApiKeyOwnersAndLimits.*db:migrate/,
    );
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(await tableChecksums(url)).toEqual(checksum);

    const migrated = await runCli(['db:migrate'], { env });
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/^Applied \d+ migrations:\n {2}ApiKeyOwnersAndLimits1732000002000\n/);

    const first = JSON.parse(
      (await runCli(['keys:backfill-report', '--json'], { env })).stdout,
    ) as ReportJson;
    expect(first.count).toBe(N);
    expect(first.keys.map((k) => k.id).sort()).toEqual([...plain.keys()].sort());
    expect(first.keys.every((k) => plain.get(k.id)!.startsWith(k.key_prefix))).toBe(true);

    const used = [...plain.keys()].slice(0, M);
    const gateway = await createTestApp({ databaseUrl: url });
    try {
      for (const [i, id] of used.entries()) {
        const header =
          i % 2 ? { 'X-API-Key': plain.get(id)! } : { Authorization: `Bearer ${plain.get(id)!}` };
        const me = await request(gateway.url).get('/api/v1/me').set(header).expect(200);
        expect(me.body.id).toBe(id);
        expect(me.body.user_id).toBeNull();
      }
    } finally {
      await gateway.close();
    }

    const after = await runCli(['keys:backfill-report', '--json'], { env });
    const second = JSON.parse(after.stdout) as ReportJson;
    expect(second.count).toBe(N - M);
    expect(second.keys.map((k) => k.id).sort()).toEqual([...plain.keys()].slice(M).sort());

    const text = await runCli(['keys:backfill-report', '--fail-if-any'], { env });
    expect(text.code).toBe(2);
    expect(text.stdout).toMatch(new RegExp(`^Found ${N - M} API keys without a lookup hash\\.$`, 'm'));
    for (const id of used) expect(text.stdout).not.toContain(id);
  });
});
