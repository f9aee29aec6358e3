import { Transform } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, Min, MinLength } from 'class-validator';

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : /^-?\d+$/.test(String(value)) ? Number(value) : value;
const toBool = ({ value }: { value: unknown }) => {
  if (value === undefined || value === '') return undefined;
  const v = String(value).toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return value;
};
/** host:port[,host:port...]; hosts are names, IPv4, or [IPv6]. */
const HOST_PORT_LIST =
  /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}(,(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5})*$/;
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

export interface HostPort {
  host: string;
  port: number;
}

interface RedisAuth {
  username?: string;
  password?: string;
  tls: boolean;
}

/** The three Redis shapes (README "Configuration", docs/scaling.md). */
export type RedisTarget = (
  | { kind: 'single'; url: string }
  | ({ kind: 'cluster'; nodes: HostPort[] } & RedisAuth)
  | ({ kind: 'sentinel'; sentinels: HostPort[]; name: string; sentinelPassword?: string } & RedisAuth)
) & {
  /** A command without an answer after this long fails (REDIS_COMMAND_TIMEOUT_MS; undefined = never). */
  commandTimeoutMs?: number;
};

export function parseHostPorts(list: string): HostPort[] {
  return list.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return { host: hp.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(hp.slice(i + 1)) };
  });
}

/**
 * The largest completion cap a client may ask for (`max_tokens`, `max_completion_tokens`:
 * 400 above) and a deployment may set (`max_output_tokens`): above every model's real output.
 */
export const MAX_COMPLETION_TOKENS = 1_000_000;

/** A reservation must outlive its request: the total upstream timeout plus this, at least. */
export const RESERVATION_TTL_MARGIN_MS = 5_000;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The environment, validated once at start (see `loadConfig`). Every setting the
 * gateway reads is here; nothing outside libs/config touches `process.env`.
 */
export class AppConfig {
  @IsIn(['development', 'production', 'test'])
  NODE_ENV: 'development' | 'production' | 'test' = 'development';

  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(65535)
  PORT = 3000;

  @IsString()
  HOST = '127.0.0.1';

  /** postgres://user:pass@host:port/db; unset = embedded PostgreSQL under DATA_DIR. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(/^postgres(ql)?:\/\/\S+$/, { message: 'must be a postgres:// or postgresql:// URL' })
  DATABASE_URL?: string;

  /** redis://host:port/db; unset = in-process quota store and caches (one instance only). */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(/^rediss?:\/\/\S+$/, { message: 'must be a redis:// or rediss:// URL' })
  REDIS_URL?: string;

  /**
   * Redis Cluster seed nodes, `host:port,host:port,...` (ioredis discovers the rest).
   * Exclusive with REDIS_URL and REDIS_SENTINELS.
   */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(HOST_PORT_LIST, { message: 'must be a list like host1:6379,host2:6379' })
  REDIS_CLUSTER_NODES?: string;

  /** Sentinels, `host:port,host:port,...`; with REDIS_SENTINEL_NAME. Exclusive with REDIS_URL and REDIS_CLUSTER_NODES. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(HOST_PORT_LIST, { message: 'must be a list like host1:26379,host2:26379' })
  REDIS_SENTINELS?: string;

  /** The master name the sentinels monitor (`sentinel monitor <name> ...`). */
  @Transform(emptyToUndefined)
  @IsOptional()
  @Matches(/^[A-Za-z0-9._-]{1,64}$/, {
    message: 'must be the monitored master name (letters, digits, . _ -)',
  })
  REDIS_SENTINEL_NAME?: string;

  /** Username (ACL) of the Redis data nodes, for REDIS_CLUSTER_NODES / REDIS_SENTINELS. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  REDIS_USERNAME?: string;

  /** Password of the Redis data nodes, for REDIS_CLUSTER_NODES / REDIS_SENTINELS (REDIS_URL carries its own). */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  REDIS_PASSWORD?: string;

  /** Password of the sentinels themselves (`requirepass` on the sentinels), when set. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  REDIS_SENTINEL_PASSWORD?: string;

  /** TLS to the data nodes (and sentinels) for REDIS_CLUSTER_NODES / REDIS_SENTINELS (REDIS_URL: use rediss://). */
  @Transform(toBool)
  @IsBoolean()
  REDIS_TLS = false;

  /**
   * A Redis command without an answer after this many ms fails (ioredis' commandTimeout), so a
   * Redis that stalls without closing the connection (paused, a partition without a reset, a
   * proxy that holds the bytes) is a store failure, answered per QUOTA_FAIL_MODE, not a request
   * that waits with it. Every command the gateway sends takes well under a millisecond to run
   * (the longest, a rebuild's chunk, a few). 0 = wait forever.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(600_000)
  REDIS_COMMAND_TIMEOUT_MS = 2000;

  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(16, { message: 'must be at least 16 characters' })
  MASTER_KEY?: string;

  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(32, { message: 'must be at least 32 characters' })
  JWT_SECRET?: string;

  /** JWT lifetime: seconds, or a number with s/m/h/d. */
  @Matches(/^\d+[smhd]?$/, { message: 'must be a duration like 3600, 15m, 12h or 7d' })
  JWT_TTL = '12h';

  @Transform(toInt)
  @IsInt()
  @Min(4)
  @Max(15)
  BCRYPT_ROUNDS = 10;

  @IsIn(LOG_LEVELS)
  LOG_LEVEL: LogLevel = 'info';

  /** Also write JSON log lines to this file (e.g. logs/app.log). */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  LOG_FILE?: string;

  /** false: log lines go to LOG_FILE only, none to stdout (the test harness: quiet runs). */
  @Transform(toBool)
  @IsBoolean()
  LOG_STDOUT = true;

  @IsString()
  @MinLength(1)
  DATA_DIR = './.data';

  /**
   * Shut down when the parent process goes away (a SIGKILLed `npm start`). `auto`: only when
   * started by an npm script (npm sets `npm_lifecycle_event`), never under a plain `node`, a
   * supervisor or a container runtime.
   */
  @IsIn(['auto', 'true', 'false'])
  STOP_WITH_PARENT: 'auto' | 'true' | 'false' = 'auto';

  /** STOP_WITH_PARENT resolved (loadConfig). */
  stopWithParent = false;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(65535)
  EMBEDDED_PG_PORT = 54329;

  @Transform(toBool)
  @IsBoolean()
  MIGRATIONS_RUN = true;

  @Matches(/^\d+(b|kb|mb)?$/i, { message: 'must be a size like 1mb, 512kb or 1048576' })
  BODY_LIMIT = '1mb';

  /** On first start (no tenant yet) create the `default` tenant and an admin. */
  @Transform(toBool)
  @IsBoolean()
  BOOTSTRAP_ADMIN = true;

  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  ADMIN_EMAIL?: string;

  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  @MinLength(8, { message: 'must be at least 8 characters' })
  ADMIN_PASSWORD?: string;

  // --- API key guard ---
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(3600)
  KEY_LRU_TTL_SECONDS = 10;

  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(86400)
  KEY_REDIS_TTL_SECONDS = 300;

  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(3600)
  KEY_NEGATIVE_TTL_SECONDS = 30;

  /**
   * Key lookups that reach PostgreSQL or bcrypt (cache misses) and fail, per client address
   * and key prefix per minute; counted before the work, a success gives its point back.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  AUTH_FAILURE_LIMIT = 10;

  /** The same, over all clients of this instance, per second. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  AUTH_FAILURE_GLOBAL_LIMIT = 1000;

  /** Failed legacy (bcrypt) fallbacks per key prefix per minute, all clients, before the prefix cools down. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  LEGACY_PREFIX_FAILURE_LIMIT = 20;

  /** bcrypt compares for unauthenticated callers (login, legacy key fallback) running at once. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(64)
  BCRYPT_CONCURRENCY = 2;

  /** Compares waiting for a slot at most; beyond it 503 `auth_busy`. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(1000)
  BCRYPT_QUEUE = 8;

  /**
   * CPU priority (nice, 0-19) of the threads running those compares: above 0 they take only
   * the CPU that serving requests leaves (Linux; elsewhere they run at the process's).
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(19)
  BCRYPT_NICE = 10;

  /**
   * Which proxies' X-Forwarded-For to believe for the client address: `false` (none),
   * `true` (any: only behind a proxy that overwrites the header), a hop count, or a
   * comma-separated list of addresses, CIDRs and `loopback` / `linklocal` / `uniquelocal`.
   */
  @Matches(/^(true|false|\d{1,2}|[0-9a-zA-Z:.,/ ]+)$/, {
    message: 'must be true, false, a hop count or a comma-separated list of addresses/CIDRs',
  })
  TRUST_PROXY = 'loopback';

  // --- Login throttling ---
  /** Failed logins per account (email) per window, all addresses and instances. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  LOGIN_ACCOUNT_LIMIT = 10;

  /** Failed logins per client address per window. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  LOGIN_ADDRESS_LIMIT = 50;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(86400)
  LOGIN_WINDOW_SECONDS = 600;

  // --- Quotas ---
  @IsIn(['closed', 'open'])
  QUOTA_FAIL_MODE: 'closed' | 'open' = 'closed';

  /**
   * While a quota script waits for Redis's answer, the event loop keeps turning (setImmediate)
   * for up to this many ms instead of sleeping in the kernel until the reply wakes it: on a VM
   * the wake-up is a large part of a sub-millisecond round trip (docs/BENCHMARKS.md). 0 = off.
   */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(100)
  QUOTA_WAIT_SPIN_MS = 2;

  /**
   * Without Redis, each instance counts alone: a second instance on the same database
   * refuses to start (docs/scaling.md). `true` lets it start anyway, with every limit
   * applied per instance.
   */
  @Transform(toBool)
  @IsBoolean()
  QUOTA_INDEPENDENT_COUNTERS = false;

  /** IANA timezone for daily/monthly reset periods. */
  @IsString()
  QUOTA_TIMEZONE = 'UTC';

  /**
   * Completion tokens wanted when a request sets no cap and its deployment no
   * `max_output_tokens`: the most the allowance grants then (README "Quotas").
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(MAX_COMPLETION_TOKENS)
  QUOTA_DEFAULT_MAX_TOKENS = 4096;

  /** A grant below this (or below the client's own cap, if smaller) is a 429 instead. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  @Max(MAX_COMPLETION_TOKENS)
  QUOTA_MIN_COMPLETION_TOKENS = 16;

  /**
   * When an unsettled reservation (crashed request) is given back. Unset: the total upstream
   * timeout + 60 s; a value shorter than that timeout + 5 s is refused at start (a request
   * must never outlive its reservation).
   */
  @Transform(toInt)
  @IsOptional()
  @IsInt()
  @Min(5)
  QUOTA_RESERVATION_TTL_SECONDS!: number;

  @Transform(toInt)
  @IsInt()
  @Min(10)
  LEDGER_FLUSH_MS = 1000;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  LEDGER_BATCH_SIZE = 500;

  @Transform(toInt)
  @IsInt()
  @Min(100)
  LEDGER_MAX_QUEUE = 100000;

  /** statement_timeout of ledger writes; the client gives up 2 s later (a PostgreSQL that drops packets). */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  LEDGER_QUERY_TIMEOUT_MS = 10000;

  /** With Redis: a ledger stream entry read by an instance that did not acknowledge it this long is claimed by another. */
  @Transform(toInt)
  @IsInt()
  @Min(100)
  LEDGER_CLAIM_IDLE_MS = 5000;

  // --- Completions ---
  /** JSON routing table (models -> deployments). Unset = the built-in mock models. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  MODELS_FILE?: string;

  /** Until the upstream accepted the TCP (and TLS) connection. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_CONNECT_TIMEOUT_MS = 5000;

  /**
   * Streams only: until the upstream's first chunk. A non-streamed answer's first byte comes
   * when generation ends (minutes for reasoning models): only the total timeout bounds it.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_FIRST_BYTE_TIMEOUT_MS = 60000;

  /** Streams only: the longest silence between two chunks once the stream started. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_STREAM_IDLE_TIMEOUT_MS = 60000;

  /** The whole exchange of one client request, every attempt included (the OpenAI SDK's 10 min). */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_TOTAL_TIMEOUT_MS = 600000;

  /** Retries of the same deployment per client request (connection reset, 502, 503 before the first byte). */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  @Max(10)
  UPSTREAM_RETRIES = 2;

  /** Base of the jittered exponential back-off between two retries. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  UPSTREAM_RETRY_BACKOFF_MS = 250;

  /** Failures of a deployment within ROUTING_FAILURE_WINDOW_MS that start its cooldown. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  ROUTING_FAILURE_THRESHOLD = 3;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  ROUTING_FAILURE_WINDOW_MS = 60000;

  /** How long a failing deployment is skipped before one request probes it. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  ROUTING_COOLDOWN_MS = 30000;

  /** The longest an upstream's Retry-After may keep a deployment out of rotation. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  ROUTING_MAX_RETRY_AFTER_MS = 3600000;

  /** With Redis: how often an instance reads the deployment states the others wrote. */
  @Transform(toInt)
  @IsInt()
  @Min(50)
  ROUTING_SYNC_MS = 1000;

  // --- Operations ---
  /** When set, /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  METRICS_TOKEN?: string;

  /** How long a start waits for PostgreSQL and Redis (with back-off) before it gives up. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  STARTUP_TIMEOUT_MS = 30000;

  /** How long SIGTERM waits for in-flight requests and streams. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  SHUTDOWN_GRACE_MS = 15000;

  /**
   * How long an idle client connection is kept open. Above the idle timeout of whatever sits in
   * front (AWS ALB: 60 s), so the gateway never closes a connection the proxy is about to reuse
   * (which it reports as a 502); Node's default, 5 s, did that to keep-alive clients under load.
   */
  @Transform(toInt)
  @IsInt()
  @Min(1000)
  @Max(600000)
  HTTP_KEEP_ALIVE_TIMEOUT_MS = 65000;

  /** Ledger backlog above which /health/ready reports not ready. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  READY_MAX_LEDGER_BACKLOG = 50000;

  /** Which Redis the gateway uses (validated by loadConfig: at most one shape is set). */
  get redis(): RedisTarget | null {
    const auth = {
      username: this.REDIS_USERNAME,
      password: this.REDIS_PASSWORD,
      tls: this.REDIS_TLS,
    };
    const commandTimeoutMs = this.REDIS_COMMAND_TIMEOUT_MS || undefined;
    if (this.REDIS_URL) return { kind: 'single', url: this.REDIS_URL, commandTimeoutMs };
    if (this.REDIS_CLUSTER_NODES)
      return { kind: 'cluster', nodes: parseHostPorts(this.REDIS_CLUSTER_NODES), ...auth, commandTimeoutMs };
    if (this.REDIS_SENTINELS)
      return {
        kind: 'sentinel',
        sentinels: parseHostPorts(this.REDIS_SENTINELS),
        name: this.REDIS_SENTINEL_NAME as string,
        sentinelPassword: this.REDIS_SENTINEL_PASSWORD,
        ...auth,
        commandTimeoutMs,
      };
    return null;
  }

  get isProduction(): boolean {
    return this.NODE_ENV === 'production';
  }

  /** Resolved secrets: always set after loadConfig (generated in development). */
  get masterKey(): string {
    return this.MASTER_KEY as string;
  }
  get jwtSecret(): string {
    return this.JWT_SECRET as string;
  }

  get jwtTtlSeconds(): number {
    const m = /^(\d+)([smhd]?)$/.exec(this.JWT_TTL)!;
    const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]]!;
    return Number(m[1]) * unit;
  }

  /** TRUST_PROXY as Express' `trust proxy` setting takes it. */
  get trustProxy(): boolean | number | string {
    const v = this.TRUST_PROXY.trim();
    if (v === 'true' || v === 'false') return v === 'true';
    if (/^\d+$/.test(v)) return Number(v);
    return v;
  }

  get bodyLimitBytes(): number {
    const m = /^(\d+)(b|kb|mb)?$/i.exec(this.BODY_LIMIT)!;
    const unit = { b: 1, kb: 1024, mb: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'kb' | 'mb'];
    return Number(m[1]) * unit;
  }
}
