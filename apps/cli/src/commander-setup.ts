import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { InjectCommander } from 'nest-commander';

/** The part of commander's Command used here (nest-commander ships its own commander copy). */
interface Program {
  name(name: string): Program;
  description(text: string): Program;
  usage(text: string): Program;
  addHelpText(position: 'before' | 'after', text: string): Program;
  exitOverride(): Program;
  showHelpAfterError(message: string): Program;
  readonly commands: readonly Program[];
}

const ENVIRONMENT = `
Configuration: the gateway's environment (DATABASE_URL, or the embedded PostgreSQL
under DATA_DIR; REDIS_URL; BCRYPT_ROUNDS; ...). Logs go to stderr, errors only
(LOG_LEVEL=debug shows all). Exit codes: 0 ok, 1 error, 2 keys:backfill-report
--fail-if-any found keys. See docs/cli.md.`;

/**
 * Runs after nest-commander built the program (its onModuleInit). nest-commander adds
 * subcommands with `new Command()`, which do not inherit the root's exitOverride: a
 * parse error in a subcommand would call process.exit() and skip the cleanup (pool,
 * an embedded PostgreSQL this process started). Every command throws instead; main.ts
 * exits with the error's code (0 for --help).
 */
@Injectable()
export class CommanderSetup implements OnApplicationBootstrap {
  constructor(@InjectCommander() private readonly program: Program) {}

  onApplicationBootstrap(): void {
    this.program
      .name('llm-gateway')
      .usage('<command> [options]')
      .description('Operator commands of llm-gateway, on the gateway database.')
      .addHelpText('after', ENVIRONMENT);
    for (const command of [this.program, ...this.program.commands]) {
      command.exitOverride();
      command.showHelpAfterError('(add --help for usage)');
    }
  }
}
