import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppConfig, loadConfig } from '@app/config';
import { AppModule } from '../../apps/gateway/src/app.module';
import { ConfigureOptions, configureApp } from '../../apps/gateway/src/setup';
import { dbUrl, TEMPLATE_DB, withClient } from './servers';

/** TEST_LOGS=1: the gateways a test starts log to the terminal (default: quiet). */
export const TEST_LOGS = process.env.TEST_LOGS === '1';

export const MASTER_KEY = 'test-master-key-0123456789abcdef';
export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef0123456789';

/** A fresh database cloned from the migrated template (one per test file, or per call). */
export async function createDatabase(): Promise<string> {
  const admin = process.env.TEST_PG_ADMIN_URL;
  if (!admin) throw new Error('TEST_PG_ADMIN_URL unset: run through jest (test/harness/global-setup.ts)');
  const name = `t_${randomBytes(6).toString('hex')}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`));
  return dbUrl(admin, name);
}

export function redisUrl(): string | undefined {
  return process.env.TEST_REDIS_URL;
}

/** `describe` when a Redis server runs for this test run; otherwise skipped, loudly (never in CI: setup fails there). */
export function describeWithRedis(name: string, fn: () => void): void {
  (redisUrl() ? describe : describe.skip)(name, fn);
}

export interface TestApp {
  app: NestExpressApplication;
  url: string;
  config: AppConfig;
  databaseUrl: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Reuse a database (two instances on one database); default: a fresh one. */
  databaseUrl?: string;
  /** Use the run's Redis (default false: in-process stores). */
  redis?: boolean;
  env?: Record<string, string>;
  /** configureApp's options (the hot path on by default, as in main.ts). */
  configure?: ConfigureOptions;
}

/** The real gateway (AppModule + configureApp, as main.ts) on a loopback port. */
export async function createTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const databaseUrl = opts.databaseUrl ?? (await createDatabase());
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    DATA_DIR: mkdtempSync(join(tmpdir(), 'gw-test-data-')),
    DATABASE_URL: databaseUrl,
    MASTER_KEY,
    JWT_SECRET,
    BCRYPT_ROUNDS: '4',
    // Quiet runs: no log line on the terminal unless TEST_LOGS=1 asks (a suite that checks
    // the logs sets LOG_FILE, or LOG_STDOUT=true and captures stdout).
    LOG_LEVEL: TEST_LOGS ? 'info' : 'silent',
    LOG_STDOUT: TEST_LOGS ? 'true' : 'false',
    BOOTSTRAP_ADMIN: 'false',
    ...(opts.redis ? { REDIS_URL: redisUrl() ?? '' } : {}),
    ...opts.env,
  };
  if (opts.redis && !env.REDIS_URL) throw new Error('redis requested but no Redis server in this run');
  const config = loadConfig(env);
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bodyParser: false,
    logger: false,
    bufferLogs: true,
  });
  configureApp(app, config, opts.configure);
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}`, config, databaseUrl, close: () => app.close() };
}
