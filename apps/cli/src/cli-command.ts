import 'reflect-metadata';
import { Type } from '@nestjs/common';
import { Command, CommandMetadata, CommandRunner } from 'nest-commander';

export interface CliCommandMetadata extends CommandMetadata {
  /**
   * The command uses Redis when REDIS_URL is set (cache eviction, quota counters). Other
   * commands run without a Redis connection, so Redis being down does not stop them.
   */
  redis?: boolean;
  /** db:migrate: runs on a schema that is behind (every other command refuses to). */
  migratesSchema?: boolean;
}

const CLI_COMMAND = Symbol('cli-command');

/** nest-commander's @Command plus what main.ts needs to know before it starts Nest. */
export function CliCommand(meta: CliCommandMetadata): ClassDecorator {
  return (target) => {
    Reflect.defineMetadata(CLI_COMMAND, meta, target);
    const { redis: _redis, migratesSchema: _migrates, ...command } = meta;
    Command(command)(target as unknown as Type<CommandRunner>);
  };
}

export function cliCommandMetadata(type: Type<CommandRunner>): CliCommandMetadata {
  const meta = Reflect.getMetadata(CLI_COMMAND, type) as CliCommandMetadata | undefined;
  if (!meta) throw new Error(`${type.name} is not decorated with @CliCommand`);
  return meta;
}
