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
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

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

  @IsString()
  @MinLength(1)
  DATA_DIR = './.data';

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

  /** Failed key attempts per client IP per minute before answering 429. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  AUTH_FAILURE_LIMIT = 30;

  // --- Quotas ---
  @IsIn(['closed', 'open'])
  QUOTA_FAIL_MODE: 'closed' | 'open' = 'closed';

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

  // --- Completions ---
  /** JSON routing table (models -> deployments). Unset = the built-in mock models. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  MODELS_FILE?: string;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_CONNECT_TIMEOUT_MS = 5000;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_FIRST_BYTE_TIMEOUT_MS = 60000;

  @Transform(toInt)
  @IsInt()
  @Min(1)
  UPSTREAM_TOTAL_TIMEOUT_MS = 600000;

  // --- Operations ---
  /** When set, /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. */
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsString()
  METRICS_TOKEN?: string;

  /** How long SIGTERM waits for in-flight requests and streams. */
  @Transform(toInt)
  @IsInt()
  @Min(0)
  SHUTDOWN_GRACE_MS = 15000;

  /** Ledger backlog above which /health/ready reports not ready. */
  @Transform(toInt)
  @IsInt()
  @Min(1)
  READY_MAX_LEDGER_BACKLOG = 50000;

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

  get bodyLimitBytes(): number {
    const m = /^(\d+)(b|kb|mb)?$/i.exec(this.BODY_LIMIT)!;
    const unit = { b: 1, kb: 1024, mb: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'kb' | 'mb'];
    return Number(m[1]) * unit;
  }
}
