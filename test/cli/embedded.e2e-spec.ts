import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { EmbeddedPostgres } from '@app/database';
import { freePort } from '../harness/servers';
import { CLI, cliEnv, ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

async function answers(url: string): Promise<boolean> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** No DATABASE_URL: the gateway's embedded PostgreSQL under DATA_DIR/pg. */
describe('CLI on the embedded PostgreSQL (compiled CLI)', () => {
  let dataDir: string;
  let port: number;
  let env: Record<string, string>;
  let gateway: EmbeddedPostgres | undefined;

  beforeAll(async () => {
    await ensureCliBuilt();
    dataDir = tempDataDir();
    port = await freePort();
    env = { DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(port) };
  }, 180_000);

  afterAll(async () => {
    await gateway?.stop();
  });

  it('starts the server itself when nothing runs, and stops it again', async () => {
    const migrated = await runCli(['db:migrate'], { env, timeoutMs: 120_000 });
    expect(migrated.stderr).toBe('');
    expect(migrated.stdout).toMatch(/^Applied \d+ migrations:/);
    const created = await runCli(['tenants:create', 'embedded-co'], { env });
    expect(created.code).toBe(0);
    const url = new EmbeddedPostgres({ dataDir: join(dataDir, 'pg'), port }).url;
    expect(await answers(url)).toBe(false);
  }, 180_000);

  it('Ctrl-C stops the server it started (it runs detached, in its own process group)', async () => {
    const url = new EmbeddedPostgres({ dataDir: join(dataDir, 'pg'), port }).url;
    // users:create --password-stdin waits for stdin's end: the server is up, the command still runs.
    const child = spawn(
      process.execPath,
      [
        CLI,
        'users:create',
        '--tenant',
        'embedded-co',
        '--email',
        'i@example.test',
        '--role',
        'member',
        '--password-stdin',
      ],
      {
        env: cliEnv(env),
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const until = Date.now() + 60_000;
    while (!(await answers(url)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(await answers(url)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toBe('\ninterrupted (SIGINT)\n');
    expect(await answers(url)).toBe(false);
  }, 120_000);

  it('uses a server that already runs on the data directory (the gateway), and leaves it running', async () => {
    gateway = new EmbeddedPostgres({ dataDir: join(dataDir, 'pg'), port });
    await gateway.start();
    const list = await runCli(['tenants:list', '--json'], { env });
    expect(list.stderr).toBe('');
    expect((JSON.parse(list.stdout) as { name: string }[]).map((t) => t.name)).toEqual(['embedded-co']);
    expect(await answers(gateway.url)).toBe(true);

    // Found through the data directory's postmaster.pid even when EMBEDDED_PG_PORT differs.
    const other = await runCli(['tenants:list'], {
      env: { ...env, EMBEDDED_PG_PORT: String(await freePort()) },
    });
    expect(other.stdout).toContain('embedded-co');
    expect(await answers(gateway.url)).toBe(true);
  }, 120_000);

  it('refuses a server on the port that serves another data directory', async () => {
    const r = await runCli(['tenants:list'], { env: { ...env, DATA_DIR: tempDataDir() } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^error: the embedded PostgreSQL on 127\\.0\\.0\\.1:${port} serves another data directory \\(.*\\); set DATA_DIR`,
      ),
    );
    expect(await answers(gateway!.url)).toBe(true);
  });
});
