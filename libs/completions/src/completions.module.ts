import { DynamicModule, Module, ModuleMetadata, Type } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ApiKeysModule } from '@app/api-keys';
import { AppConfig } from '@app/config';
import { CompletionsController } from './completions.controller';
import { CompletionsService } from './completions.service';
import { MessagesController } from './messages/messages.controller';
import { MessagesService } from './messages/messages.service';
import { EmbeddingsController } from './embeddings/embeddings.controller';
import { EmbeddingsService } from './embeddings/embeddings.service';
import { ExchangeRunner } from './exchange';
import { ResponseOwner } from './responses/response-owner.entity';
import { ResponseOwnersRepository } from './responses/response-owners.repository';
import { ResponsesController } from './responses/responses.controller';
import { ResponsesService } from './responses/responses.service';
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
      imports: [ApiKeysModule, TypeOrmModule.forFeature([ResponseOwner]), ...(options.imports ?? [])],
      controllers: [CompletionsController, MessagesController, EmbeddingsController, ResponsesController],
      providers: [
        {
          provide: RoutingTable,
          inject: [AppConfig],
          useFactory: (c: AppConfig) => loadRoutingTable(c.MODELS_FILE),
        },
        ProviderRegistry,
        DeploymentRouter,
        ExchangeRunner,
        CompletionsService,
        MessagesService,
        EmbeddingsService,
        ResponseOwnersRepository,
        ResponsesService,
        options.meter
          ? { provide: UsageMeter, useExisting: options.meter }
          : { provide: UsageMeter, useClass: NoopUsageMeter },
      ],
      exports: [CompletionsService, MessagesService, RoutingTable, DeploymentRouter],
    };
  }
}
