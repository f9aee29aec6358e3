import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createDatabase, JWT_SECRET, MASTER_KEY, redisUrl } from '../harness/app';
import { buildGateway, GatewayProcess, MAIN_JS, startGateway } from '../harness/gateway-process';
import { ensureCliBuilt, runCli } from '../cli/cli-harness';

/**
 * No silent split brain: without Redis each gateway counts alone, so a second instance on
 * the same database must refuse to start (PostgreSQL advisory lock), unless
 * QUOTA_INDEPENDENT_COUNTERS=true. The CLI is never blocked.
 */
const ROOT = resolve(__dirname, '../..');

/** Starts the gateway expecting it to fail: its exit code and stderr. */
function startFailing(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done) => {
    const proc = spawn(process.execPath, [MAIN_JS], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-proc-data-')),
        MASTER_KEY,
        JWT_SECRET,
        BOOTSTRAP_ADMIN: 'false',
        LOG_LEVEL: 'error',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, stderr });
    });
  });
}

describe('a second instance without a shared store refuses to start', () => {
  let db: string;
  let first: GatewayProcess | undefined;
  const others: GatewayProcess[] = [];

  beforeAll(async () => {
    buildGateway();
    await ensureCliBuilt();
    db = await createDatabase();
    first = await startGateway({ DATABASE_URL: db, LOG_LEVEL: 'error' });
  }, 240_000);
  afterAll(async () => {
    for (const g of [first, ...others]) if (g && g.proc.exitCode === null) g.proc.kill('SIGKILL');
    await Promise.all([first, ...others].map((g) => g?.exited));
  });

  it('without Redis: exit 1 and one line naming the reason and the two ways out', async () => {
    const r = await startFailing({ DATABASE_URL: db });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^Start failed: another gateway instance without Redis already runs on this database: each would count quotas alone, multiplying every limit; configure the same Redis \(REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS\) on every instance, or set QUOTA_INDEPENDENT_COUNTERS=true to apply each limit per instance\n$/,
    );
  });

  (redisUrl() ? it : it.skip)(
    'with Redis next to one without: refused too (its counters would not be shared)',
    async () => {
      const r = await startFailing({ DATABASE_URL: db, REDIS_URL: redisUrl()! });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^Start failed: another gateway instance without Redis already runs on this database: it counts quotas in its own process/,
      );
    },
  );

  it('QUOTA_INDEPENDENT_COUNTERS=true starts anyway', async () => {
    const g = await startGateway({
      DATABASE_URL: db,
      QUOTA_INDEPENDENT_COUNTERS: 'true',
      LOG_LEVEL: 'error',
    });
    others.push(g);
    expect((await fetch(`${g.url}/health/live`)).status).toBe(200);
  });

  it('the CLI runs against the same database meanwhile', async () => {
    const r = await runCli(['tenants:create', 'split-brain-check'], {
      env: { DATABASE_URL: db, DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-cli-data-')) },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('once the first instance is gone (even killed), another one starts', async () => {
    first!.proc.kill('SIGKILL');
    await first!.exited;
    const g = await startGateway({ DATABASE_URL: db, LOG_LEVEL: 'error' });
    others.push(g);
    expect((await fetch(`${g.url}/health/live`)).status).toBe(200);
  });
});
