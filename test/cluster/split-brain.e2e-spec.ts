import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createDatabase, createTestApp, JWT_SECRET, MASTER_KEY, redisUrl, TestApp } from '../harness/app';
import { buildGateway, MAIN_JS } from '../harness/gateway-process';
import { ensureCliBuilt, runCli } from '../cli/cli-harness';

/**
 * No silent split brain: without Redis each gateway counts alone, so a second instance on
 * the same database must refuse to start (PostgreSQL advisory lock), unless
 * QUOTA_INDEPENDENT_COUNTERS=true. The CLI is never blocked.
 */
const ROOT = resolve(__dirname, '../..');

interface Run {
  proc: ChildProcess;
  /** Resolves with the exit code and stderr once the process ended. */
  exit: Promise<{ code: number | null; stderr: string }>;
  /** Resolves true once it listens, false if it exited first. */
  listening: Promise<boolean>;
}

/** The built gateway as a subprocess (no start timeout of its own: a loaded CI machine is slow). */
function runGateway(env: Record<string, string>): Run {
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
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exit = new Promise<{ code: number | null; stderr: string }>((done) =>
    proc.once('exit', (code) => done({ code, stderr })),
  );
  const listening = new Promise<boolean>((done) => {
    proc.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (stdout.includes('llm-gateway listening on')) done(true);
    });
    void exit.then(() => done(false));
  });
  return { proc, exit, listening };
}

describe('a second instance without a shared store refuses to start', () => {
  let db: string;
  let first: TestApp | undefined;
  const runs: Run[] = [];
  const run = (env: Record<string, string>) => {
    const r = runGateway({ DATABASE_URL: db, ...env });
    runs.push(r);
    return r;
  };

  beforeAll(async () => {
    buildGateway();
    await ensureCliBuilt();
    db = await createDatabase();
    // the first instance, without Redis: it holds the lock
    first = await createTestApp({ databaseUrl: db });
  }, 300_000);
  afterAll(async () => {
    for (const r of runs) if (r.proc.exitCode === null) r.proc.kill('SIGKILL');
    await Promise.all(runs.map((r) => r.exit));
    await first?.close();
  });

  it('without Redis: exit 1 and one line naming the reason and the two ways out', async () => {
    const r = await run({}).exit;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^Start failed: another gateway instance without Redis already runs on this database: each would count quotas alone, multiplying every limit; configure the same Redis \(REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS\) on every instance, or set QUOTA_INDEPENDENT_COUNTERS=true to apply each limit per instance\n$/,
    );
  });

  (redisUrl() ? it : it.skip)(
    'with Redis next to one without: refused too (its counters would not be shared)',
    async () => {
      const r = await run({ REDIS_URL: redisUrl()! }).exit;
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^Start failed: another gateway instance without Redis already runs on this database: it counts quotas in its own process/,
      );
    },
  );

  it('the CLI runs against the same database meanwhile', async () => {
    const r = await runCli(['tenants:create', 'split-brain-check'], {
      env: { DATABASE_URL: db, DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-cli-data-')) },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('QUOTA_INDEPENDENT_COUNTERS=true starts anyway', async () => {
    const r = run({ QUOTA_INDEPENDENT_COUNTERS: 'true' });
    expect(await r.listening).toBe(true);
    r.proc.kill('SIGTERM');
    await r.exit;
  });

  it('once the first instance is gone (even killed), another one starts', async () => {
    await first!.close();
    first = undefined;
    const r = run({});
    expect(await r.listening).toBe(true);
    r.proc.kill('SIGKILL');
    await r.exit;
    // the killed process's session ended with it, and its lock
    first = await createTestApp({ databaseUrl: db });
  });
});
