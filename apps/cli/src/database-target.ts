import { readFileSync, realpathSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import Redis, { Cluster } from 'ioredis';
import { Client } from 'pg';
import { AppConfig, HostPort, RedisTarget } from '@app/config';
import { connectionOptions, EmbeddedPostgres } from '@app/database';
import { CliError } from './cli-error';

/** host:port/db of a connection URL, never its credentials. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** The reason of a connection failure in a few words (AggregateError from dual-stack localhost has no message). */
export function connectionReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] };
  const code = err?.code ?? err?.errors?.[0]?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host not found',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ECONNRESET: 'connection reset',
  };
  if (code && known[code]) return known[code];
  const message = err?.message?.split('\n')[0];
  if (message && /timeout/i.test(message)) return 'timed out';
  return message || code || String(e);
}

function portAnswers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => done(true));
  });
}

/** The port of a live postmaster on this data directory (postmaster.pid line 4), or null. */
function livePostmasterPort(dataDir: string): number | null {
  let lines: string[];
  try {
    lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!pid || !port) return null;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return null; // EPERM: alive, another user's
  }
  return port;
}

/**
 * Connects once, so an unreachable database is one clear line before Nest starts. With
 * `dataDir`, also checks that the server serves that data directory (an embedded server
 * found running on the port could be another checkout's).
 */
async function probePostgres(url: string, what: string, dataDir?: string): Promise<void> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  // A failed connect may also emit 'error'; without a listener that would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw new CliError(`cannot connect to ${what}: ${connectionReason(e)}`);
  }
  try {
    if (!dataDir) return;
    const served = await client
      .query<{ data_directory: string }>('SHOW data_directory')
      .then((r) => r.rows[0]?.data_directory)
      .catch(() => undefined); // not allowed to read it: nothing to compare
    if (served && realpath(served) !== realpath(dataDir))
      throw new CliError(
        `${what.replace(/ \(data in .*\)$/, '')} serves another data directory (${served}); ` +
          "set DATA_DIR to the gateway's, or EMBEDDED_PG_PORT to a free port",
      );
  } finally {
    await client.end().catch(() => undefined);
  }
}

function realpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

const hostPorts = (list: HostPort[]) => list.map((n) => `${n.host}:${n.port}`).join(',');

/** Commands that touch Redis check it up front, so they fail in one line instead of waiting on it. */
export async function probeRedis(target: RedisTarget): Promise<void> {
  const once = {
    lazyConnect: true,
    connectTimeout: 3000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  };
  let redis: Redis | Cluster;
  let where: string;
  if (target.kind === 'single') {
    redis = new Redis(target.url, { ...once, retryStrategy: () => null });
    where = `Redis at ${describeUrl(target.url)} (REDIS_URL)`;
  } else if (target.kind === 'cluster') {
    const opts = connectionOptions(target);
    if (opts.type !== 'cluster') throw new Error('unreachable');
    redis = new Cluster(opts.nodes, {
      ...opts.options,
      lazyConnect: true,
      clusterRetryStrategy: () => null,
      redisOptions: { ...opts.options?.redisOptions, connectTimeout: 3000, maxRetriesPerRequest: 0 },
    });
    where = `Redis Cluster at ${hostPorts(target.nodes)} (REDIS_CLUSTER_NODES)`;
  } else {
    const opts = connectionOptions(target);
    redis = new Redis({
      ...opts.options,
      ...once,
      retryStrategy: () => null,
      sentinelRetryStrategy: () => null,
    });
    where = `Redis master "${target.name}" through the sentinels ${hostPorts(target.sentinels)} (REDIS_SENTINELS)`;
  }
  let cause: unknown;
  redis.on('error', (e: unknown) => (cause ??= e));
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    throw new CliError(`cannot connect to ${where}: ${connectionReason(cause ?? e)}`);
  } finally {
    redis.disconnect();
  }
}

/**
 * The gateway's database, as the gateway finds it: DATABASE_URL, or the embedded
 * PostgreSQL under DATA_DIR/pg. An embedded server that already runs (the gateway's:
 * a live postmaster.pid in the data directory, or the port answering) is used as it is;
 * starting a second one would stop the running one (EmbeddedPostgres stops a leftover
 * postmaster of its data directory). Otherwise the CLI starts it and stops it on close.
 */
export class DatabaseTarget {
  /** Set before the server starts, so an interrupt during the start still stops it. */
  private started?: EmbeddedPostgres;

  constructor(private readonly config: AppConfig) {}

  /** Finds (or starts) the database and checks that it answers; returns its URL. */
  async open(): Promise<string> {
    const config = this.config;
    if (config.DATABASE_URL) {
      await probePostgres(
        config.DATABASE_URL,
        `PostgreSQL at ${describeUrl(config.DATABASE_URL)} (DATABASE_URL)`,
      );
      return config.DATABASE_URL;
    }
    const dataDir = join(config.DATA_DIR, 'pg');
    const livePort = livePostmasterPort(dataDir);
    const port = livePort ?? config.EMBEDDED_PG_PORT;
    const what = `the embedded PostgreSQL on 127.0.0.1:${port} (data in ${dataDir})`;
    const pg = new EmbeddedPostgres({ dataDir, port });
    if (livePort !== null || (await portAnswers(port))) {
      await probePostgres(pg.url, what, dataDir);
      return pg.url;
    }
    this.started = pg;
    try {
      await pg.start();
    } catch (e) {
      await this.close();
      throw new CliError(`cannot start ${what}: ${(e as Error).message.split('\n')[0]}`);
    }
    try {
      await probePostgres(pg.url, what);
    } catch (e) {
      await this.close();
      throw e;
    }
    return pg.url;
  }

  /** Stops the embedded server if this process started it; a running gateway's is left alone. */
  async close(): Promise<void> {
    const pg = this.started;
    this.started = undefined;
    await pg?.stop().catch(() => undefined);
  }
}
