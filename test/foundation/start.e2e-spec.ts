import request from 'supertest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGateway, GatewayProcess, MAIN_JS, startGateway } from '../harness/gateway-process';
import { freePort } from '../harness/servers';

/** README.md's fenced block marked `bash quickstart`: the commands a reader pastes. */
function quickStartBlock(): string {
  const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
  const m = /^```bash quickstart\n([\s\S]*?)^```$/m.exec(readme);
  if (!m) throw new Error('README.md has no ```bash quickstart block');
  return m[1];
}

/**
 * Runs the quick start's commands with bash, real curl and jq, as a reader pasting them with
 * ADMIN_PASSWORD exported would (errexit and pipefail so that any failed command fails the
 * test). Without curl or jq: fails in CI (`.ci/run` installs them), a loud skip elsewhere.
 */
function runQuickStart(
  url: string,
  adminPassword: string,
): { code: number | null; stdout: string; stderr: string } | null {
  const script = quickStartBlock();
  for (const step of ['/auth/login', '/api/v1/api-keys"', '"stream": true', '/usage"'])
    expect(script).toContain(step);
  expect(script).toContain('GW=http://127.0.0.1:3000\n');
  const missing = ['bash', 'curl', 'jq'].filter((t) => spawnSync('which', [t]).status !== 0);
  if (missing.length) {
    if (process.env.CI === 'true')
      throw new Error(`README quick start needs ${missing.join(', ')}: not on PATH`);
    process.stderr.write(`\n  !!! ${missing.join(', ')} not on PATH: README quick start NOT run !!!\n\n`);
    return null;
  }
  const r = spawnSync(
    'bash',
    ['--norc', '--noprofile', '-euo', 'pipefail', '-c', script.replace('http://127.0.0.1:3000', url)],
    {
      env: { PATH: process.env.PATH ?? '', HOME: tmpdir(), ADMIN_PASSWORD: adminPassword },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'], // (a socket on stdin makes bash read bashrc, as under sshd)
      timeout: 30_000,
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The README's quick start: `npm start` (the built gateway) with no environment but a port:
 * embedded PostgreSQL under DATA_DIR, first-start admin printed once, data kept across restarts.
 */
describe('quick start on embedded defaults (built gateway, subprocess)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gw-quickstart-'));
  let pgPort: number;
  let gw: GatewayProcess | undefined;

  beforeAll(async () => {
    buildGateway();
    pgPort = await freePort();
  });
  afterAll(async () => {
    if (gw && gw.proc.exitCode === null) {
      gw.proc.kill('SIGTERM');
      await gw.exited;
    }
  });

  const start = () =>
    startGateway({
      // Nothing else: no DATABASE_URL, REDIS_URL, MASTER_KEY, JWT_SECRET.
      NODE_ENV: '',
      MASTER_KEY: '',
      JWT_SECRET: '',
      BOOTSTRAP_ADMIN: '',
      BCRYPT_ROUNDS: '',
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(pgPort),
    });

  it('serves /health within 60 s, prints the first admin once, and a restart reuses the data', async () => {
    const t0 = Date.now();
    gw = await start();
    await request(gw.url).get('/health').expect(200);
    expect(Date.now() - t0).toBeLessThan(60_000);
    const m = /admin login (\S+) \/ (\S+)/.exec(gw.stdout());
    expect(m).not.toBeNull();
    const [, email, password] = m!;
    await request(gw.url).post('/auth/login').send({ email, password }).expect(200);
    // A start that reads well: JSON lines (stdout is not a terminal), no route-mapping or
    // module lines at info, and the banner last: URL, admin, one-time password, master key.
    const lines = gw.stdout().split('\n');
    const bannerAt = lines.findIndex((l) => l.includes('llm-gateway listening on'));
    for (const l of lines.slice(0, bannerAt).filter((x) => x.trim()))
      expect(JSON.parse(l)).toEqual(expect.objectContaining({ level: expect.any(Number) }));
    expect(gw.stdout()).not.toMatch(/Mapped \{|RoutesResolver|InstanceLoader/);
    expect(gw.stdout()).not.toContain('\u001b['); // no colour codes
    const banner = lines.slice(bannerAt).join('\n');
    expect(banner).toMatch(/Admin page +http:\/\/127\.0\.0\.1:\d+\/admin/);
    expect(banner).toContain(`admin login ${email} / ${password}`);
    expect(banner).toContain(`Master key   in ${join(dataDir, 'secrets.json')}`);
    // README's quick start, pasted as written (only the port differs): login, a key, a
    // completion and a streamed one from the mock model (no network), the key's usage.
    const qs = runQuickStart(gw.url, password);
    if (qs) {
      expect({ code: qs.code, stderr: qs.stderr }).toEqual({ code: 0, stderr: '' });
      expect(qs.stdout).toMatch(/"object":"chat\.completion".*"content":"This is a mock answer/);
      expect(qs.stdout).toMatch(/"object":"chat\.completion\.chunk"[\s\S]*\ndata: \[DONE\]\n/);
      const usage = JSON.parse(qs.stdout.trim().split('\n').pop()!) as {
        object: string;
        name: string;
        current_period: { tokens: number; quota_limit: number };
      };
      expect(usage).toMatchObject({ object: 'api_key.usage', name: 'quick start' });
      expect(usage.current_period).toMatchObject({ quota_limit: 100000 });
      const first = JSON.parse(qs.stdout.split('\n')[0]) as { usage: { total_tokens: number } };
      expect(usage.current_period.tokens).toBe(2 * first.usage.total_tokens); // both counted
    }
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);

    gw = await start();
    expect(gw.stdout()).not.toMatch(/admin login/);
    const res = await request(gw.url).post('/auth/login').send({ email, password }).expect(200);
    expect(res.body.user.email).toBe(email);
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
  }, 120_000);

  /** The built gateway run to its end: exit code and stdout. */
  function run(env: Record<string, string>): Promise<{ code: number | null; out: string; ms: number }> {
    const t0 = Date.now();
    const proc = spawn(process.execPath, [MAIN_JS], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', BCRYPT_ROUNDS: '4', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const kill = setTimeout(() => proc.kill('SIGKILL'), 90_000);
    return new Promise((resolve) =>
      proc.once('close', (code) => {
        clearTimeout(kill);
        resolve({ code, out, ms: Date.now() - t0 });
      }),
    );
  }
  const jsonLines = (out: string) =>
    out
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { level: number; msg: string; context?: string });

  it('waits for an unreachable PostgreSQL with back-off, in JSON lines, then one fatal line and exit 1', async () => {
    const port = await freePort();
    const r = await run({
      PORT: String(await freePort()),
      DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-nodb-')),
      DATABASE_URL: `postgres://gw:db-secret-pw@127.0.0.1:${port}/gw`,
      STARTUP_TIMEOUT_MS: '2000',
    });
    expect(r.code).toBe(1);
    expect(r.ms).toBeLessThan(30_000);
    expect(r.out).not.toMatch(/db-secret-pw|\n\s+at /); // no password, no stack
    expect(r.out).not.toContain('\u001b[');
    const lines = jsonLines(r.out); // every line is JSON
    const waits = lines.filter((l) => l.msg === `waiting for PostgreSQL at 127.0.0.1:${port}`);
    expect(waits.length).toBeGreaterThanOrEqual(3);
    expect(lines.filter((l) => l.level >= 50)).toEqual([lines[lines.length - 1]]);
    expect(lines[lines.length - 1]).toMatchObject({
      level: 60,
      msg: expect.stringMatching(
        new RegExp(
          `^start failed: PostgreSQL at 127\\.0\\.0\\.1:${port} not reachable after 2\\.\\d s \\(STARTUP_TIMEOUT_MS=2000\\): connect ECONNREFUSED`,
        ),
      ),
    });
  }, 60_000);

  it('a start that fails after the embedded PostgreSQL started (port taken) stops it: nothing is left', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => taken.once('listening', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await run({ PORT: String(port), DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(pgPort) });
      expect(r.code).toBe(1);
      const lines = jsonLines(r.out);
      expect(lines.filter((l) => l.level >= 50)).toEqual([
        expect.objectContaining({
          level: 60,
          msg: `start failed: port ${port} on 127.0.0.1 is already in use (set PORT or HOST)`,
        }),
      ]);
      expect(lines.some((l) => l.msg === 'embedded PostgreSQL stopped')).toBe(true);
    } finally {
      taken.close();
    }
    expect(existsSync(join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
    expect(await refused(pgPort)).toBe(true);
  }, 90_000);

  it('`npm start` killed with SIGKILL leaves nothing behind: the gateway and its embedded PostgreSQL stop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-npmkill-'));
    const port = await freePort();
    const pgPortHere = await freePort();
    const npm = spawn('npm', ['start'], {
      cwd: join(__dirname, '../..'),
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATA_DIR: dir,
        EMBEDDED_PG_PORT: String(pgPortHere),
        BCRYPT_ROUNDS: '4',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout.on('data', (c: Buffer) => (out += c.toString()));
    npm.stderr.on('data', (c: Buffer) => (out += c.toString()));
    let gatewayPid = 0;
    try {
      await until(
        () => out.includes('llm-gateway listening on'),
        60_000,
        () => out,
      );
      const first = out.split('\n').find((l) => l.startsWith('{'))!;
      gatewayPid = (JSON.parse(first) as { pid: number }).pid;
      const pgPid = Number(readFileSync(join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
      expect(alive(gatewayPid) && alive(pgPid)).toBe(true);
      expect(gatewayPid).not.toBe(npm.pid); // npm's own process, not the gateway, is killed

      npm.kill('SIGKILL');
      await until(
        () => !alive(gatewayPid) && !alive(pgPid),
        20_000,
        () => out,
      );
      expect(out).toContain(`the parent process (pid ${npm.pid}) is gone: shutting down`);
      expect(out).toContain('embedded PostgreSQL stopped');
      expect(existsSync(join(dir, 'pg', 'postmaster.pid'))).toBe(false);
      expect(await refused(port)).toBe(true);
      expect(await refused(pgPortHere)).toBe(true);
    } finally {
      npm.kill('SIGKILL');
      // A failed run must not leave its gateway behind either (SIGTERM stops its PostgreSQL).
      if (gatewayPid && alive(gatewayPid)) process.kill(gatewayPid, 'SIGTERM');
    }
  }, 90_000);

  it('a SIGKILLed gateway leaves its PostgreSQL running: the next start stops it; a pid file naming another process is stale', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-leftover-'));
    const env = { DATA_DIR: dir, EMBEDDED_PG_PORT: String(await freePort()) };
    const pidOf = () => Number(readFileSync(join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const first = await startGateway(env);
    const orphan = pidOf();
    first.proc.kill('SIGKILL');
    await first.exited;
    expect(alive(orphan)).toBe(true); // SIGKILL gives no chance to stop it

    let second: GatewayProcess | undefined = await startGateway(env);
    try {
      expect(alive(orphan)).toBe(false);
      expect(pidOf()).not.toBe(orphan);
      second.proc.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      second = undefined;

      // After a reboot the pid in a stale postmaster.pid may be another program's: never stopped.
      const other = spawn('sleep', ['60'], { stdio: 'ignore' });
      writeFileSync(join(dir, 'pg', 'postmaster.pid'), `${other.pid}\n${join(dir, 'pg')}\n`);
      second = await startGateway(env);
      expect(alive(other.pid!)).toBe(true);
      other.kill('SIGKILL');
    } finally {
      if (alive(orphan)) process.kill(orphan, 'SIGINT');
      second?.proc.kill('SIGTERM');
      await second?.exited;
    }
  }, 120_000);
});

/** A process that exists and is not a zombie (an orphan's parent may be slow to reap it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function until(ok: () => boolean, ms: number, context: () => string): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms:\n${context().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const c = createConnection(port, '127.0.0.1');
    c.once('connect', () => (c.destroy(), resolve(false)));
    c.once('error', () => resolve(true));
  });
}
