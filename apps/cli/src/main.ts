#!/usr/bin/env node
import 'reflect-metadata';
import { INestApplicationContext } from '@nestjs/common';
import { userInfo } from 'node:os';
import { CommandFactory, CommandRunner } from 'nest-commander';
import { AppConfig, ConfigError, loadConfig } from '@app/config';
import { AuditService } from '@app/tenancy';
import { CliCommandMetadata, cliCommandMetadata } from './cli-command';
import { CliError, EXIT } from './cli-error';
import { CliLogger } from './cli-logger';
import { CliModule } from './cli.module';
import { CliOutput } from './cli-output';
import { COMMANDS } from './commands';
import { DatabaseTarget, probeRedis } from './database-target';
import { SchemaCheck } from './schema-check';

/**
 * llm-gateway operator CLI (docs/cli.md): `npm run cli -- <command>`.
 *
 * Two passes: argv is parsed first with no database (so `--help` and option errors work
 * when PostgreSQL is down, CliModule.forParsing); then the chosen command runs with the
 * gateway's database (reachable, or one line and exit 1), and Redis only if it uses it. Every error ends as one
 * `error: ...` line on stderr and an exit code; cleanup (pool, an embedded PostgreSQL
 * this process started) always runs.
 */

/** Stops what this process started (set by runCommand); run on exit paths and on signals. */
let cleanup: (() => Promise<void>) | undefined;
let interrupted = false;

function isCommanderError(e: unknown): e is Error & { code: string; exitCode: number } {
  const err = e as { code?: unknown; exitCode?: unknown };
  return (
    typeof err?.code === 'string' && err.code.startsWith('commander.') && typeof err.exitCode === 'number'
  );
}

/** One line for the operator, and the exit code. Commander already printed its own errors. */
function report(e: unknown, verbose: boolean): number {
  if (interrupted) return EXIT.error; // the signal handler exits; what failed meanwhile is noise
  if (isCommanderError(e)) return e.exitCode;
  if (e instanceof CliError) {
    if (e.message) process.stderr.write(`error: ${e.message}\n`);
    return e.exitCode;
  }
  const err = e as Error;
  const message = err?.message?.split('\n')[0] || String(e);
  process.stderr.write(`error: ${message}\n`);
  if (verbose && err?.stack) process.stderr.write(`${err.stack}\n`);
  return EXIT.error;
}

const options = (logger: CliLogger) => ({
  logger,
  // Errors reach main() instead of Nest calling process.exit / abort.
  abortOnError: false,
  serviceErrorHandler: (e: Error) => {
    throw e;
  },
});

/**
 * First pass, without a database: the real program parses argv, but each command's run()
 * only records that it was chosen. Help, unknown commands and option errors end here
 * (commander prints them); otherwise the chosen command runs in the second pass.
 */
async function parse(): Promise<{ command?: CliCommandMetadata; code: number }> {
  const app = await CommandFactory.createWithoutRunning(
    CliModule.forParsing(),
    options(new CliLogger(false)),
  );
  let command: CliCommandMetadata | undefined;
  for (const type of COMMANDS) {
    app.get<CommandRunner>(type).run = () => {
      command = cliCommandMetadata(type);
      return Promise.resolve();
    };
  }
  try {
    await CommandFactory.runApplication(app);
    return { command, code: EXIT.ok };
  } catch (e) {
    return { code: report(e, false) };
  } finally {
    await app.close();
  }
}

function loadCliConfig(): AppConfig {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`configuration: ${e.message}`);
    throw e;
  }
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

async function runCommand(command: CliCommandMetadata): Promise<number> {
  const config = loadCliConfig();
  const verbose = config.LOG_LEVEL === 'debug' || config.LOG_LEVEL === 'trace';
  let target: DatabaseTarget | undefined;
  let app: INestApplicationContext | undefined;
  let closed = false;
  cleanup = async () => {
    if (closed) return;
    closed = true;
    await app?.close().catch(() => undefined);
    await target?.close().catch(() => undefined);
  };
  try {
    target = new DatabaseTarget(config);
    const url = await target.open();
    // The CLI's own settings on top of the gateway's configuration: it never migrates or
    // bootstraps implicitly (a read-only report must not write), connects to the database
    // target found above, and only commands that use Redis connect to it.
    config.DATABASE_URL = url;
    config.MIGRATIONS_RUN = false;
    config.BOOTSTRAP_ADMIN = false;
    if (!command.redis) {
      config.REDIS_URL = config.REDIS_CLUSTER_NODES = config.REDIS_SENTINELS = undefined;
    } else if (config.redis) await probeRedis(config.redis);

    app = await CommandFactory.createWithoutRunning(
      CliModule.forRoot(config),
      options(new CliLogger(verbose)),
    );
    if (!command.migratesSchema) await app.get(SchemaCheck).assertCurrent();
    // What the CLI changes (tenants, users, keys) is audited with the operator's OS user as actor.
    app.get(AuditService).setActorOutsideRequests({ type: 'cli', label: `cli (${osUser()})` });
    await CommandFactory.runApplication(app);
    return app.get(CliOutput).exitCode;
  } catch (e) {
    return report(e, verbose);
  } finally {
    await cleanup();
  }
}

/** Ctrl-C / SIGTERM: stop what this process started (an embedded PostgreSQL runs detached). */
function onSignal(signal: NodeJS.Signals, code: number): void {
  process.once(signal, () => {
    interrupted = true;
    CliLogger.muted = true;
    process.stderr.write(`\ninterrupted (${signal})\n`);
    const done = () => process.exit(code);
    setTimeout(done, 10_000).unref();
    void (cleanup?.() ?? Promise.resolve()).finally(done);
  });
}

async function main(): Promise<void> {
  onSignal('SIGINT', 130);
  onSignal('SIGTERM', 143);
  let code: number;
  try {
    const parsed = await parse();
    code = parsed.command ? await runCommand(parsed.command) : parsed.code;
  } catch (e) {
    code = report(e, false);
  }
  process.exitCode = code;
  // Whatever a library left open (timers, sockets) must not keep an operator command alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

void main();
