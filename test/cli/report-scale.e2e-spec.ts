import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from '../harness/app';
import { withClient } from '../harness/servers';
import { CLI, cliEnv, ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

const BIG = 150_000;
const SMALL = 1_000;
const PRELOAD = ['-r', join(__dirname, 'max-rss.cjs')];
/**
 * V8 lets the heap grow lazily when it may, so an uncapped peak RSS rises with the amount
 * of garbage made, not with what is kept. With the old space capped the peak shows what
 * the process needs: the same for 1,000 and 150,000 keys when rows are not kept (a
 * report holding 150,000 rows and their JSON would not fit in 128 MB next to the app).
 */
const CAPPED = ['--max-old-space-size=128', ...PRELOAD];
const maxRssMb = (stderr: string) => Number(/max-rss-kb=(\d+)/.exec(stderr)![1]) / 1024;

/**
 * Over 100,000 keys the report streams (a cursor in its read-only transaction): peak RSS
 * with 150,000 keys stays within a few MB of the peak with 1,000 (figures in docs/cli.md,
 * printed by this test), and a terminal sees progress on stderr.
 */
describe('keys:backfill-report over 150,000 keys (compiled CLI)', () => {
  let env: Record<string, string>;
  const out = mkdtempSync(join(tmpdir(), 'gw-cli-scale-'));

  beforeAll(async () => {
    await ensureCliBuilt();
    const url = await createDatabase();
    env = { DATABASE_URL: url, DATA_DIR: tempDataDir() };
    await withClient(url, async (c) => {
      for (const [name, n] of [
        ['small', SMALL],
        ['big', BIG],
      ] as const) {
        const { rows } = await c.query<{ id: string }>(
          `INSERT INTO tenants (name) VALUES ($1) RETURNING id`,
          [name],
        );
        await c.query(
          `INSERT INTO api_keys (tenant_id, name, key_hash, key_prefix, created_at)
           SELECT $1, 'legacy key ' || g, '$2b$04$' || repeat('x', 53), 'sk-' || substr(md5(g::text), 1, 9),
                  now() - g * interval '1 second'
             FROM generate_series(1, $2::int) g`,
          [rows[0].id, n],
        );
      }
    });
  }, 240_000);

  it('streams every row with flat memory (JSON and table)', async () => {
    const small = await runCli(['keys:backfill-report', '--json', '--tenant', 'small'], {
      env,
      nodeArgs: CAPPED,
      stdoutFile: join(out, 'small.json'),
    });
    expect(small.code).toBe(0);
    const started = Date.now();
    const big = await runCli(['keys:backfill-report', '--json', '--tenant', 'big'], {
      env,
      nodeArgs: CAPPED,
      stdoutFile: join(out, 'big.json'),
      timeoutMs: 180_000,
    });
    const seconds = (Date.now() - started) / 1000;
    expect(big.code).toBe(0);
    // Not a terminal: no progress line, only the preload's figure.
    expect(big.stderr).toMatch(/^max-rss-kb=\d+\n$/);

    const report = JSON.parse(readFileSync(join(out, 'big.json'), 'utf8')) as {
      count: number;
      keys: { id: string; name: string }[];
    };
    expect(report.count).toBe(BIG);
    expect(report.keys).toHaveLength(BIG);
    expect(new Set(report.keys.map((k) => k.id)).size).toBe(BIG);
    expect(report.keys[0].name).toBe('legacy key 1'); // newest first
    expect(report.keys[BIG - 1].name).toBe(`legacy key ${BIG}`);

    const table = await runCli(['keys:backfill-report', '--tenant', 'big'], {
      env,
      nodeArgs: CAPPED,
      stdoutFile: join(out, 'big.txt'),
      timeoutMs: 180_000,
    });
    expect(table.code).toBe(0);
    const rows = readFileSync(join(out, 'big.txt'), 'utf8')
      .split('\n')
      .filter((l) => /^[0-9a-f]{8}-/.test(l));
    expect(rows).toHaveLength(BIG);

    // For the record (docs/cli.md): the same run with Node's default heap settings.
    const uncapped = await runCli(['keys:backfill-report', '--json', '--tenant', 'big'], {
      env,
      nodeArgs: PRELOAD,
      stdoutFile: join(out, 'big-uncapped.json'),
      timeoutMs: 180_000,
    });
    expect(uncapped.code).toBe(0);

    const [s, b, t, u] = [small, big, table, uncapped].map((r) => maxRssMb(r.stderr));
    const jsonMb = statSync(join(out, 'big.json')).size / 1024 / 1024;
    process.stderr.write(
      `\nkeys:backfill-report peak RSS (old space capped at 128 MB): ${SMALL} keys --json ${s.toFixed(1)} MB, ` +
        `${BIG} keys --json ${b.toFixed(1)} MB (${jsonMb.toFixed(1)} MB of JSON in ${seconds.toFixed(1)} s), ` +
        `table ${t.toFixed(1)} MB; uncapped ${BIG} keys --json ${u.toFixed(1)} MB\n`,
    );
    expect(b - s).toBeLessThan(40);
    expect(t - s).toBeLessThan(40);
  }, 300_000);

  it('shows progress on stderr when it is a terminal', async () => {
    const hasScript = await new Promise<boolean>((resolve) =>
      spawn('sh', ['-c', 'command -v script'], { stdio: 'ignore' }).on('close', (code) =>
        resolve(code === 0),
      ),
    );
    if (!hasScript) {
      process.stderr.write(
        '\n  !!! `script` (util-linux) not found: the terminal progress check is SKIPPED !!!\n\n',
      );
      return;
    }
    // `script` gives the CLI a pseudo-terminal; stdout still goes to a file.
    const file = join(out, 'tty.txt');
    const command = `'${process.execPath}' '${CLI}' keys:backfill-report --tenant big > '${file}'`;
    const terminal = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], {
        env: cliEnv(env),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let seen = '';
      child.stdout.on('data', (c: Buffer) => (seen += c.toString('utf8')));
      child.once('error', reject);
      child.once('close', () => resolve(seen));
    });
    expect(terminal).toContain(`keys:backfill-report: 1000 / ${BIG} keys`);
    expect(terminal).toContain(`keys:backfill-report: ${BIG} / ${BIG} keys`);
    // The result itself has no progress in it.
    expect(readFileSync(file, 'utf8')).not.toContain('keys:backfill-report:');
  }, 180_000);

  it('stops quietly when the reader goes away (`| head`): exit 141, nothing on stderr', async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, 'keys:backfill-report', '--tenant', 'big'], {
        env: cliEnv(env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
      child.stdout.once('data', () => child.stdout.destroy());
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stderr }));
    });
    expect(result).toEqual({ code: 141, stderr: '' });
  }, 120_000);
});
