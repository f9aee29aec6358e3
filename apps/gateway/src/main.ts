import 'reflect-metadata';
import { Logger, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { BootstrapService } from '@app/auth';
import { AppConfig, ConfigError, loadConfig } from '@app/config';
import { EmbeddedPostgres } from '@app/database';
import { GracefulShutdown, ReadinessRegistry, startLogger, watchParent } from '@app/observability';
import { AppModule } from './app.module';
import { releaseStartMemory } from './release-start-memory';
import { configureApp } from './setup';

/** The last lines of a start: where the gateway is, and on a first start how to get in. */
function banner(app: NestExpressApplication, config: AppConfig): string {
  const url = `http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${config.PORT}`;
  const first = app.get(BootstrapService).firstStart;
  const lines = [
    '',
    `  llm-gateway listening on http://${config.HOST}:${config.PORT} (docs: /docs, admin: /admin)`,
    `    Admin page   ${url}/admin`,
    `    API docs     ${url}/docs`,
  ];
  if (first) {
    lines.push(
      first.password
        ? `    First start  admin login ${first.email} / ${first.password}   (shown once; ADMIN_EMAIL / ADMIN_PASSWORD choose them)`
        : `    First start  admin login ${first.email} with ADMIN_PASSWORD`,
    );
  }
  lines.push(
    config.MASTER_KEY && !config.isProduction
      ? `    Master key   in ${join(config.DATA_DIR, 'secrets.json')} (unless MASTER_KEY is set)`
      : '    Master key   MASTER_KEY',
    '',
  );
  return lines.join('\n') + '\n';
}

/** One line for the operator: what failed, without a stack. */
function reason(e: unknown, config: AppConfig): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EADDRINUSE')
    return `port ${config.PORT} on ${config.HOST} is already in use (set PORT or HOST)`;
  if (err?.code === 'EACCES')
    return `not allowed to listen on ${config.HOST}:${config.PORT} (set PORT or HOST)`;
  return err?.message?.split('\n')[0] ?? String(e);
}

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`Configuration error: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  // Every line from here on is a JSON line of the same logger (pretty on a development TTY).
  const log = startLogger(config);
  let app: NestExpressApplication | undefined;
  let shutdown: GracefulShutdown | undefined;
  // A SIGKILLed `npm start` (STOP_WITH_PARENT): this process, and the embedded PostgreSQL,
  // go with it, whether it is still starting or already serving.
  if (config.stopWithParent)
    watchParent((parent) => {
      log.warn(`the parent process (pid ${parent}) is gone: shutting down`, 'Shutdown');
      void (shutdown?.shutdown('parent process gone') ?? EmbeddedPostgres.stopAll().then(() => 1)).then(
        (code) => process.exit(code),
      );
    });
  try {
    app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
      logger: log as LoggerService,
      bodyParser: false,
      abortOnError: false,
    });
    configureApp(app, config);
    const started = app;
    // SIGTERM/SIGINT: stop accepting, drain requests and streams, then app.close(), exit 0.
    shutdown = new GracefulShutdown(started.getHttpServer() as Server, {
      graceMs: config.SHUTDOWN_GRACE_MS,
      closeApp: () => started.close(),
      logger: new Logger('Shutdown'),
      onDraining: () => {
        started.get(ReadinessRegistry).draining = true;
      },
    }).install();
    await started.listen(config.PORT, config.HOST);
    process.stdout.write(banner(started, config));
    releaseStartMemory();
  } catch (e) {
    log.fatal(`start failed: ${reason(e, config)}`, 'Start');
    // What the failed start had started must not outlive it (the embedded PostgreSQL
    // runs detached, in its own process group).
    await Promise.race([app?.close(), new Promise((r) => setTimeout(r, 5000).unref())]).catch(
      () => undefined,
    );
    await EmbeddedPostgres.stopAll();
    process.exit(1);
  }
}

void main();
