import { DynamicModule, InjectionToken, Module, Provider } from '@nestjs/common';
import { ApiKeysModule } from '@app/api-keys';
import { AuthModule } from '@app/auth';
import { AppConfig, ConfigModule } from '@app/config';
import { DatabaseModule, RedisConnectionModule } from '@app/database';
import { ObservabilityModule } from '@app/observability';
import { TenancyModule } from '@app/tenancy';
import { CliOutput } from './cli-output';
import { COMMANDS } from './commands';
import { CommanderSetup } from './commander-setup';
import { Resolvers } from './resolvers';
import { SchemaCheck } from './schema-check';

/**
 * The CLI's composition root: the gateway's lib modules (apps/gateway AppModule) with
 * no HTTP server, plus the commands. Two differences, both so an operator command has
 * no side effects of its own: QuotaModule is loaded lazily by quota:reconcile only (its
 * start-up work is the gateway's, see that command), and CompletionsModule (providers,
 * routing) is not needed by any command.
 */
@Module({})
export class CliModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: CliModule,
      imports: [
        ConfigModule.forRoot(config),
        ObservabilityModule,
        DatabaseModule,
        RedisConnectionModule.forRoot(config),
        TenancyModule,
        AuthModule,
        ApiKeysModule,
      ],
      providers: [...COMMANDS, CliOutput, Resolvers, SchemaCheck, CommanderSetup],
    };
  }

  /**
   * Parsing argv without a database (help, option errors): the same commands, their
   * dependencies replaced by empty placeholders. main.ts replaces each command's run()
   * in this mode, so nothing ever calls a placeholder.
   */
  static forParsing(): DynamicModule {
    const dependencies = new Set<InjectionToken>(
      COMMANDS.flatMap((c) => (Reflect.getMetadata('design:paramtypes', c) ?? []) as InjectionToken[]),
    );
    const placeholders: Provider[] = [...dependencies].map((token) => ({ provide: token, useValue: {} }));
    return { module: CliModule, providers: [...COMMANDS, ...placeholders, CommanderSetup] };
  }
}
