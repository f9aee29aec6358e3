import { execFile, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { withClient } from '../harness/servers';

export const ROOT = resolve(__dirname, '../..');
/** The compiled CLI, as `npm run cli` runs it. */
export const CLI = join(ROOT, 'dist/apps/cli/src/main.js');

const SOURCES = [join(ROOT, 'apps/cli/src'), join(ROOT, 'libs')];
const LOCK = join(ROOT, 'dist/.cli-build.lock');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts'))
      newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const stale = () => !existsSync(CLI) || statSync(CLI).mtimeMs < Math.max(...SOURCES.map(newestSource));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Builds the CLI (`nest build cli`) when dist is missing or older than a source file it
 * compiles, once for all test files (a lock directory serialises parallel Jest workers).
 * A build that reports type errors in files outside the CLI still emits; the tests then
 * run on it, with the errors shown.
 */
export async function ensureCliBuilt(): Promise<void> {
  if (!stale()) return;
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      if (Date.now() - statSync(LOCK, { throwIfNoEntry: false })!.mtimeMs > 180_000)
        rmSync(LOCK, { force: true, recursive: true });
      await sleep(250);
    }
  }
  try {
    if (!stale()) return;
    const started = Date.now();
    try {
      await promisify(execFile)('npx', ['nest', 'build', 'cli'], { cwd: ROOT, maxBuffer: 16 << 20 });
    } catch (e) {
      const out = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
      if (!existsSync(CLI) || statSync(CLI).mtimeMs < started)
        throw new Error(`nest build cli failed:\n${out}`, { cause: e });
      process.stderr.write(
        `nest build cli reported errors (the CLI was emitted, testing it):\n${out.slice(0, 2000)}\n`,
      );
    }
  } finally {
    rmSync(LOCK, { force: true, recursive: true });
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  env?: Record<string, string | undefined>;
  /** Written to stdin, then closed (stdin is /dev/null otherwise). */
  input?: string;
  /** stdout goes to this file instead of memory (large reports). */
  stdoutFile?: string;
  /** node options before the script (e.g. a -r preload). */
  nodeArgs?: string[];
  timeoutMs?: number;
}

/** A data directory for one CLI environment (development secrets are generated there). */
export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'gw-cli-data-'));
}

/** The environment of a CLI run: only what is set here, not the test runner's. */
export function cliEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'test',
    BCRYPT_ROUNDS: '4',
    MASTER_KEY: 'test-master-key-0123456789abcdef',
    JWT_SECRET: 'test-jwt-secret-0123456789abcdef0123456789',
    ...extra,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Runs the compiled CLI as a subprocess. */
export function runCli(args: string[], run: CliRun = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const fd = run.stdoutFile ? openSync(run.stdoutFile, 'w') : undefined;
    const child = spawn(process.execPath, [...(run.nodeArgs ?? []), CLI, ...args], {
      cwd: ROOT,
      env: cliEnv(run.env ?? {}),
      stdio: [run.input === undefined ? 'ignore' : 'pipe', fd ?? 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    if (run.input !== undefined) child.stdin!.end(run.input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`CLI ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, run.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (fd !== undefined) closeSync(fd);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** md5 of every row of each table: equal before and after = nothing was written. */
export async function tableChecksums(url: string): Promise<Record<string, string>> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
    );
    const sums: Record<string, string> = {};
    for (const { table_name } of rows) {
      const r = await c.query<{ sum: string }>(
        `SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) AS sum FROM "${table_name}" t`,
      );
      sums[table_name] = r.rows[0].sum;
    }
    return sums;
  });
}

/**
 * Rows inserted, updated and deleted in the database's tables, from the server's
 * statistics. A backend flushes its counters when it exits, so this first waits until
 * no other client is connected to the database (the CLI has exited).
 */
export async function writeCounters(url: string): Promise<number> {
  return withClient(url, async (c) => {
    for (let i = 0; i < 100; i++) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      );
      if (rows[0].n === 0) break;
      await sleep(50);
    }
    await sleep(300);
    await c.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await c.query<{ n: string }>(
      `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) AS n FROM pg_stat_user_tables`,
    );
    return Number(rows[0].n);
  });
}
