import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import { AppConfig, ConfigError, loadConfig } from '@app/config';
import { GracefulShutdown, ReadinessRegistry } from '@app/observability';
import { AppModule } from './app.module';
import { configureApp } from './setup';

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
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bufferLogs: true,
    bodyParser: false,
  });
  configureApp(app, config);
  // SIGTERM/SIGINT: stop accepting, drain requests and streams, then app.close(), exit 0.
  new GracefulShutdown(app.getHttpServer() as Server, {
    graceMs: config.SHUTDOWN_GRACE_MS,
    closeApp: () => app.close(),
    logger: new Logger('Shutdown'),
    onDraining: () => {
      app.get(ReadinessRegistry).draining = true;
    },
  }).install();
  await app.listen(config.PORT, config.HOST);
  process.stdout.write(
    `llm-gateway listening on http://${config.HOST}:${config.PORT} (docs: /docs, admin: /admin)\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`Start failed: ${(e as Error)?.message ?? String(e)}\n`);
  process.exit(1);
});
