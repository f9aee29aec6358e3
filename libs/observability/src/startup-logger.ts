import type { LoggerService } from '@nestjs/common';
import pino from 'pino';
import type { AppConfig } from '@app/config';
import { logDestination, REDACT_PATHS } from './logging';

/** Nest's start-up chatter (a line per module, per controller, per route): debug, not info. */
const CHATTY = new Set([
  'InstanceLoader',
  'RoutesResolver',
  'RouterExplorer',
  'NestFactory',
  'NestApplication',
]);
/** Nest's own report of a failed start (with a stack): main.ts reports it in one line instead. */
const START_FAILURE = new Set(['ExceptionHandler', 'NestApplication']);

type Method = 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';

/**
 * Wraps the app's logger so that a start prints what an operator needs (the database, the
 * banner) instead of ~100 lines of route mapping; LOG_LEVEL=debug shows those again.
 */
export class QuietStartLogger implements LoggerService {
  constructor(private readonly inner: LoggerService) {}

  log(message: unknown, ...rest: unknown[]): void {
    const context = rest[rest.length - 1];
    if (typeof context === 'string' && CHATTY.has(context)) this.call('debug', message, rest);
    else this.call('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    const context = rest[rest.length - 1];
    if (typeof context === 'string' && START_FAILURE.has(context)) this.call('debug', message, rest);
    else this.call('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.call('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.call('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.call('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.call('fatal', message, rest);
  }

  private call(method: Method, message: unknown, rest: unknown[]): void {
    const fn = this.inner[method] ?? this.inner.log;
    fn.call(this.inner, message, ...rest);
  }
}

/**
 * A Nest logger writing the same JSON lines (same destination, scrubber and level) as the
 * app's nestjs-pino logger, for what happens before that one exists: module loading, the
 * database wait, and a failed start. So every line of the process has one format (JSON when
 * stdout is not a development terminal; never colour codes in a file or a pipe).
 */
export function startLogger(
  config: AppConfig,
): LoggerService & { fatal(message: unknown, ...rest: unknown[]): void } {
  const root = pino(
    { level: config.LOG_LEVEL, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    logDestination(config),
  );
  const write =
    (level: 'info' | 'error' | 'warn' | 'debug' | 'trace' | 'fatal') =>
    (message: unknown, ...rest: unknown[]) => {
      const last = rest[rest.length - 1];
      const context = typeof last === 'string' ? last : undefined;
      if (message instanceof Error) root[level]({ context, err: message }, message.message);
      else if (typeof message === 'object' && message !== null) root[level]({ context, ...message });
      else root[level]({ context }, String(message));
    };
  return new QuietStartLogger({
    log: write('info'),
    error: write('error'),
    warn: write('warn'),
    debug: write('debug'),
    verbose: write('trace'),
    fatal: write('fatal'),
  }) as QuietStartLogger & { fatal(message: unknown, ...rest: unknown[]): void };
}
