import { LoggerService } from '@nestjs/common';

/**
 * The libraries' Nest logs in the CLI: never on stdout (that is the command's result).
 * By default only errors, one line each on stderr; LOG_LEVEL=debug or trace shows every
 * level with stacks (the gateway's start-up chatter is noise for an operator command).
 */
export class CliLogger implements LoggerService {
  /** After Ctrl-C: what fails while the process shuts down is noise. */
  static muted = false;

  constructor(private readonly showAll: boolean) {}

  private write(level: string, message: unknown, params: unknown[]): void {
    if (CliLogger.muted) return;
    const context =
      typeof params[params.length - 1] === 'string' ? (params[params.length - 1] as string) : '';
    const text = message instanceof Error ? message.message : String(message);
    const stack = this.showAll && level === 'error' && typeof params[0] === 'string' && params.length > 1;
    process.stderr.write(
      `[${level}]${context ? ` ${context}:` : ''} ${text}\n${stack ? `${params[0] as string}\n` : ''}`,
    );
  }

  error(message: unknown, ...params: unknown[]): void {
    this.write('error', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.write('fatal', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    if (this.showAll) this.write('warn', message, params);
  }
  log(message: unknown, ...params: unknown[]): void {
    if (this.showAll) this.write('info', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    if (this.showAll) this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    if (this.showAll) this.write('verbose', message, params);
  }
}
