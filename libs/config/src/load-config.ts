import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync, ValidationError } from 'class-validator';
import { AppConfig, RESERVATION_TTL_MARGIN_MS } from './app-config';

/** A configuration problem, phrased as one line for the operator. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

function firstProblem(errors: ValidationError[], env: Record<string, string | undefined>): string {
  const e = errors[0];
  // A word where a number belongs: say so, not which bound it would break (PORT=abc).
  const why = e.constraints?.isInt
    ? /^\s*-?\d+(\.\d+)?\s*$/.test(env[e.property] ?? '')
      ? 'must be a whole number'
      : 'must be a number'
    : (Object.values(e.constraints ?? {})[0] ?? 'is invalid');
  const cleaned = why.replace(new RegExp(`^${e.property} `), '');
  const secret = /KEY|SECRET|PASSWORD|URL/.test(e.property);
  const shown = env[e.property] === undefined || secret ? '' : ` (got "${env[e.property]}")`;
  return `${e.property} ${cleaned}${shown}`;
}

/** One Redis shape at most, and the settings each shape needs (one line naming them). */
function checkRedisShape(c: AppConfig): string | null {
  const set = (['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'] as const).filter((k) => c[k]);
  if (set.length > 1)
    return `${set.join(' and ')} are both set: choose one Redis shape (single node, cluster or sentinel)`;
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_NAME)
    return 'REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS (the master name the sentinels monitor)';
  if (c.REDIS_SENTINEL_NAME && !c.REDIS_SENTINELS)
    return 'REDIS_SENTINEL_NAME is set without REDIS_SENTINELS';
  const extras: string[] = (['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS'] as const).filter((k) => c[k]);
  if (extras.length && !c.REDIS_CLUSTER_NODES && !c.REDIS_SENTINELS)
    return `${extras[0]} applies to REDIS_CLUSTER_NODES or REDIS_SENTINELS only (REDIS_URL carries its own: rediss://user:password@host)`;
  if (c.REDIS_SENTINEL_PASSWORD && !c.REDIS_SENTINELS)
    return 'REDIS_SENTINEL_PASSWORD is set without REDIS_SENTINELS';
  return null;
}

interface DevSecrets {
  MASTER_KEY: string;
  JWT_SECRET: string;
}

/** Development only: secrets generated once and kept in DATA_DIR, so restarts keep working. */
function devSecrets(dataDir: string): DevSecrets {
  const file = join(dataDir, 'secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DevSecrets;
  mkdirSync(dataDir, { recursive: true });
  const secrets: DevSecrets = {
    MASTER_KEY: `mk-${randomBytes(24).toString('base64url')}`,
    JWT_SECRET: randomBytes(48).toString('base64url'),
  };
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  chmodSync(file, 0o600);
  return secrets;
}

/**
 * Validates the environment into a typed AppConfig. Throws ConfigError with one line
 * naming the variable; callers print it and exit (no stack trace).
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  const known = Object.keys(new AppConfig()) as string[];
  const plain: Record<string, string | undefined> = {};
  for (const key of [
    ...known,
    'DATABASE_URL',
    'REDIS_URL',
    'REDIS_CLUSTER_NODES',
    'REDIS_SENTINELS',
    'REDIS_SENTINEL_NAME',
    'REDIS_USERNAME',
    'REDIS_PASSWORD',
    'REDIS_SENTINEL_PASSWORD',
    'MASTER_KEY',
    'JWT_SECRET',
    'LOG_FILE',
    'ADMIN_EMAIL',
    'ADMIN_PASSWORD',
    'MODELS_FILE',
    'METRICS_TOKEN',
    'QUOTA_RESERVATION_TTL_SECONDS',
  ]) {
    // `FOO= cmd` means unset, as shells and compose files write it.
    if (env[key] !== undefined && env[key] !== '') plain[key] = env[key];
  }
  const config = plainToInstance(AppConfig, plain);
  const errors = validateSync(config, { whitelist: false, forbidUnknownValues: false });
  if (errors.length) throw new ConfigError(firstProblem(errors, env));

  const redisProblem = checkRedisShape(config);
  if (redisProblem) throw new ConfigError(redisProblem);

  config.DATA_DIR = resolve(config.DATA_DIR);
  config.stopWithParent =
    config.STOP_WITH_PARENT === 'true' || (config.STOP_WITH_PARENT === 'auto' && !!env.npm_lifecycle_event);
  const minTtl = Math.ceil((config.UPSTREAM_TOTAL_TIMEOUT_MS + RESERVATION_TTL_MARGIN_MS) / 1000);
  if (config.QUOTA_RESERVATION_TTL_SECONDS === undefined)
    config.QUOTA_RESERVATION_TTL_SECONDS = Math.ceil(config.UPSTREAM_TOTAL_TIMEOUT_MS / 1000) + 60;
  else if (config.QUOTA_RESERVATION_TTL_SECONDS < minTtl)
    throw new ConfigError(
      `QUOTA_RESERVATION_TTL_SECONDS must be at least UPSTREAM_TOTAL_TIMEOUT_MS + ${RESERVATION_TTL_MARGIN_MS / 1000} s = ${minTtl} ` +
        `(got "${config.QUOTA_RESERVATION_TTL_SECONDS}"): a request must not outlive its reservation`,
    );
  if (!config.MASTER_KEY || !config.JWT_SECRET) {
    if (config.isProduction) {
      const missing = !config.MASTER_KEY ? 'MASTER_KEY' : 'JWT_SECRET';
      throw new ConfigError(`${missing} must be set when NODE_ENV=production`);
    }
    const generated = devSecrets(config.DATA_DIR);
    config.MASTER_KEY ??= generated.MASTER_KEY;
    config.JWT_SECRET ??= generated.JWT_SECRET;
  }
  return config;
}
