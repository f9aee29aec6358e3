import { DynamicModule, Module, ModuleMetadata, Type } from '@nestjs/common';
import { ApiKeysModule } from '@app/api-keys';
import { AppConfig } from '@app/config';
import { CompletionsController } from './completions.controller';
import { CompletionsService } from './completions.service';
import { MessagesController } from './messages/messages.controller';
import { MessagesService } from './messages/messages.service';
import { ProviderRegistry } from './providers/provider-registry';
import { DeploymentRouter } from './routing/deployment-router';
import { loadRoutingTable } from './routing/routing-loader';
import { RoutingTable } from './routing/routing-table';
import { NoopUsageMeter, UsageMeter } from './usage-meter';

export interface CompletionsModuleOptions {
  /** The class that charges usage (e.g. QuotaService); default NoopUsageMeter. */
  meter?: Type<unknown>;
  /** Modules the meter comes from (e.g. QuotaModule), unless it is global. */
  imports?: ModuleMetadata['imports'];
}

/** OpenAI-compatible chat completions over the routing table (docs/models.md). */
@Module({})
export class CompletionsModule {
  static forRoot(options: CompletionsModuleOptions = {}): DynamicModule {
    return {
      module: CompletionsModule,
      // ApiKeysModule: the key guard on the controller and its dependencies.
      imports: [ApiKeysModule, ...(options.imports ?? [])],
      controllers: [CompletionsController, MessagesController],
      providers: [
        {
          provide: RoutingTable,
          inject: [AppConfig],
          useFactory: (c: AppConfig) => loadRoutingTable(c.MODELS_FILE),
        },
        ProviderRegistry,
        DeploymentRouter,
        CompletionsService,
        MessagesService,
        options.meter
          ? { provide: UsageMeter, useExisting: options.meter }
          : { provide: UsageMeter, useClass: NoopUsageMeter },
      ],
      exports: [CompletionsService, MessagesService, RoutingTable, DeploymentRouter],
    };
  }
}
