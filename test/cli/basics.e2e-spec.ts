import * as bcrypt from 'bcrypt';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createDatabase } from '../harness/app';
import { freePort, withClient } from '../harness/servers';
import { CLI, cliEnv, ensureCliBuilt, runCli, tempDataDir } from './cli-harness';

/**
 * Runs the CLI on a pseudo-terminal (util-linux `script`) and types the answers when
 * their prompts appear; returns everything the terminal showed.
 */
function onTerminal(args: string[], env: Record<string, string>, answers: [prompt: string, typed: string][]) {
  return new Promise<string>((resolve, reject) => {
    const command = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: cliEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let seen = '';
    let next = 0;
    let from = 0; // answers go in order, each after its prompt appeared past the previous one
    child.stdout.on('data', (c: Buffer) => {
      seen += c.toString('utf8');
      for (let at; next < answers.length && (at = seen.indexOf(answers[next][0], from)) !== -1; next++) {
        from = at + answers[next][0].length;
        child.stdin.write(`${answers[next][1]}\r`);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', () => {
      clearTimeout(timer);
      resolve(seen);
    });
  });
}

const hasScript = spawnSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' }).status === 0;

const COMMANDS = [
  'keys:backfill-report',
  'keys:assign-owner',
  'keys:create',
  'keys:list',
  'tenants:create',
  'tenants:list',
  'users:create',
  'quota:reconcile',
  'audit:export',
  'db:migrate',
];

describe('CLI basics (compiled CLI)', () => {
  beforeAll(() => ensureCliBuilt(), 180_000);

  describe('without a database', () => {
    let env: Record<string, string>;
    beforeAll(async () => {
      // Nothing listens there: help and parse errors must not need PostgreSQL.
      env = {
        DATABASE_URL: `postgres://postgres:secret-pw@127.0.0.1:${await freePort()}/nope`,
        DATA_DIR: tempDataDir(),
      };
    });

    it('--help lists every command and exits 0; each command has --help', async () => {
      const root = await runCli(['--help'], { env });
      expect(root.code).toBe(0);
      expect(root.stderr).toBe('');
      expect(root.stdout).toMatch(/^Usage: llm-gateway <command> \[options\]/);
      for (const c of COMMANDS) expect(root.stdout).toContain(c);
      const each = await Promise.all(COMMANDS.map((c) => runCli([c, '--help'], { env })));
      each.forEach((r, i) => {
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^Usage: llm-gateway ${COMMANDS[i]} `));
      });
      const viaHelp = await runCli(['help', 'keys:backfill-report'], { env });
      expect(viaHelp.code).toBe(0);
      expect(viaHelp.stdout).toContain('--fail-if-any');
    }, 120_000);

    it('an unreachable database is one line on stderr and exit 1 (no stack, no password)', async () => {
      const r = await runCli(['keys:backfill-report'], { env });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^error: cannot connect to PostgreSQL at 127\.0\.0\.1:\d+\/nope \(DATABASE_URL\): connection refused\n$/,
      );
      expect(r.stderr).not.toContain('secret-pw');
    });

    it('usage errors are reported before any connection attempt', async () => {
      const missing = await runCli(['keys:list'], { env });
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/^error: required option '--tenant <id\|name>' not specified/);
      const unknown = await runCli(['keys:nope'], { env });
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/^error: unknown command 'keys:nope'/);
      const none = await runCli([], { env });
      expect(none.code).toBe(1);
    });

    it('a bad setting is one line naming it', async () => {
      const r = await runCli(['tenants:list'], {
        env: { ...env, EMBEDDED_PG_PORT: 'abc', DATABASE_URL: undefined },
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error: configuration: EMBEDDED_PG_PORT .*\n$/);
    });

    it('a command that uses Redis says so in one line when it is down', async () => {
      const port = await freePort();
      const r = await runCli(['quota:reconcile'], {
        env: { ...env, DATABASE_URL: await createDatabase(), REDIS_URL: `redis://127.0.0.1:${port}` },
      });
      expect(r.code).toBe(1);
      // Usually "connection refused"; on a busy machine another test's server may have taken
      // the free port meanwhile, and the reason differs. Either way: one line, exit 1.
      expect(r.stderr).toMatch(
        new RegExp(`^error: cannot connect to Redis at 127\\.0\\.0\\.1:${port} \\(REDIS_URL\\): [^\\n]+\\n$`),
      );
    });
  });

  describe('bootstrap commands', () => {
    let url: string;
    let env: Record<string, string>;
    const tenantName = `boot-${randomBytes(3).toString('hex')}`;
    const email = `dev-${randomBytes(3).toString('hex')}@example.test`;

    beforeAll(async () => {
      url = await createDatabase();
      env = { DATABASE_URL: url, DATA_DIR: tempDataDir() };
    });

    it('tenants:create, users:create --password-stdin, keys:create (key printed once), keys:list, tenants:list', async () => {
      const tenant = await runCli(['tenants:create', tenantName], { env });
      expect(tenant.code).toBe(0);
      const tenantId = /\(([0-9a-f-]{36})\)/.exec(tenant.stdout)![1];
      expect(tenant.stdout).toBe(`Created tenant ${tenantName} (${tenantId}).\n`);
      const dup = await runCli(['tenants:create', tenantName.toUpperCase()], { env });
      expect(dup.code).toBe(1);
      expect(dup.stderr).toBe(`error: A tenant named "${tenantName.toUpperCase()}" exists\n`);

      const password = 'correct horse battery staple';
      const user = await runCli(
        [
          'users:create',
          '--tenant',
          tenantName,
          '--email',
          email,
          '--role',
          'member',
          '--password-stdin',
          '--json',
        ],
        { env, input: `${password}\n` },
      );
      expect(user.stderr).toBe('');
      const created = JSON.parse(user.stdout) as Record<string, unknown>;
      expect(created).toMatchObject({ email, role: 'member', tenant_id: tenantId });
      expect(user.stdout).not.toMatch(/password|\$2b\$/);
      const hash = await withClient(
        url,
        async (c) =>
          (
            await c.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE id = $1`, [
              created.id,
            ])
          ).rows[0].password_hash,
      );
      expect(await bcrypt.compare(password, hash)).toBe(true); // the trailing newline is not part of it

      const short = await runCli(
        [
          'users:create',
          '--tenant',
          tenantName,
          '--email',
          `x${email}`,
          '--role',
          'member',
          '--password-stdin',
        ],
        { env, input: 'short\n' },
      );
      expect(short.code).toBe(1);
      expect(short.stderr).toBe('error: password must be longer than or equal to 8 characters\n');
      const noTty = await runCli(
        ['users:create', '--tenant', tenantName, '--email', `y${email}`, '--role', 'admin'],
        {
          env,
        },
      );
      expect(noTty.code).toBe(1);
      expect(noTty.stderr).toBe(
        'error: no terminal to ask for the password on: pipe it in with --password-stdin\n',
      );

      const key = await runCli(
        [
          'keys:create',
          '--tenant',
          tenantId,
          '--name',
          'ci bot',
          '--user',
          email,
          '--quota-limit',
          '5000',
          '--allowed-models',
          'gpt-4o-mini, mock-small',
        ],
        { env },
      );
      expect(key.stderr).toBe('');
      expect(key.code).toBe(0);
      const plain = /^ {2}(sk-\S+)$/m.exec(key.stdout)![1];
      expect(key.stdout).toMatch(/^Created API key "ci bot" \([0-9a-f-]{36}\) in tenant boot-.* owner dev-/);
      const stored = await withClient(
        url,
        async (c) =>
          (
            await c.query<{
              key_lookup_hash: string;
              quota_limit: string;
              allowed_models: string[];
              user_id: string;
            }>(
              `SELECT key_lookup_hash, quota_limit, allowed_models, user_id FROM api_keys WHERE tenant_id = $1`,
              [tenantId],
            )
          ).rows,
      );
      expect(stored).toEqual([
        {
          key_lookup_hash: createHash('sha256').update(plain).digest('hex'),
          quota_limit: '5000',
          allowed_models: ['gpt-4o-mini', 'mock-small'],
          user_id: created.id,
        },
      ]);

      const bad = await runCli(
        ['keys:create', '--tenant', tenantId, '--name', 'x', '--quota-period', 'weekly'],
        { env },
      );
      expect(bad.stderr).toBe(
        'error: --quota-period must be one of the following values: none, daily, monthly\n',
      );

      const system = await runCli(['keys:create', '--tenant', tenantName, '--name', 'ops', '--json'], {
        env,
      });
      const sys = JSON.parse(system.stdout) as { key: string; user_id: string };
      expect(sys.key).toMatch(/^sk-/);

      // The list never shows a key or a hash.
      const list = await runCli(['keys:list', '--tenant', tenantName], { env });
      expect(list.stdout).toMatch(/^2 API keys in tenant boot-/);
      expect(list.stdout).toContain('ci bot');
      const json = await runCli(['keys:list', '--tenant', tenantName, '--json'], { env });
      const keys = JSON.parse(json.stdout) as { name: string; user_id: string }[];
      expect(keys.map((k) => k.name).sort()).toEqual(['ci bot', 'ops']);
      for (const out of [list.stdout, json.stdout]) {
        expect(out).not.toContain(plain);
        expect(out).not.toContain(sys.key);
        expect(out).not.toMatch(/lookup_hash|key_hash|\$2b\$/);
      }

      const tenants = JSON.parse((await runCli(['tenants:list', '--json'], { env })).stdout) as {
        name: string;
      }[];
      expect(tenants.map((t) => t.name)).toContain(tenantName);
    }, 120_000);

    (hasScript ? it : it.skip)(
      'users:create asks for the password on the terminal, twice, without echo',
      async () => {
        const password = `typed-${randomBytes(6).toString('hex')}`;
        const who = `tty-${randomBytes(3).toString('hex')}@example.test`;
        const tenant = `tty-${randomBytes(3).toString('hex')}`;
        expect((await runCli(['tenants:create', tenant], { env })).code).toBe(0);
        const args = ['users:create', '--tenant', tenant, '--email', who, '--role', 'admin'];
        const shown = await onTerminal(args, env, [
          ['Password: ', password],
          ['Repeat the password: ', password],
        ]);
        expect(shown).toMatch(/Password: \r?\nRepeat the password: \r?\nCreated user tty-/);
        expect(shown).not.toContain(password);
        const hash = await withClient(
          url,
          async (c) =>
            (
              await c.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE email = $1`, [
                who,
              ])
            ).rows[0].password_hash,
        );
        expect(await bcrypt.compare(password, hash)).toBe(true);

        const mismatch = await onTerminal([...args.slice(0, 4), `x${who}`, ...args.slice(5)], env, [
          ['Password: ', password],
          ['Repeat the password: ', `${password}x`],
        ]);
        expect(mismatch).toContain('error: the passwords do not match');
      },
      60_000,
    );
  });
});
