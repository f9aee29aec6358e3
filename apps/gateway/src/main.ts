import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { AppConfig, ConfigError, loadConfig } from '@app/config';
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
  await app.listen(config.PORT, config.HOST);
  process.stdout.write(
    `llm-gateway listening on http://${config.HOST}:${config.PORT} (docs: /docs, admin: /admin)\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`Start failed: ${(e as Error)?.message ?? String(e)}\n`);
  process.exit(1);
});
