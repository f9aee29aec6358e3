import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import type { Deployment, ProviderKind } from '../routing/routing-table';
import { AnthropicProvider } from './anthropic.provider';
import { MockProvider } from './mock.provider';
import { OpenAiProvider } from './openai.provider';
import { Provider } from './provider';
import { UpstreamHttp } from './upstream-http';

/** One provider per kind over one set of pooled connections, closed at shutdown. */
@Injectable()
export class ProviderRegistry implements OnApplicationShutdown {
  private readonly http = new UpstreamHttp();
  private readonly byKind: Record<ProviderKind, Provider>;

  constructor() {
    this.byKind = {
      openai: new OpenAiProvider(this.http),
      anthropic: new AnthropicProvider(this.http),
      mock: new MockProvider(),
    };
  }

  for(deployment: Deployment): Provider {
    return this.byKind[deployment.provider];
  }

  async onApplicationShutdown(): Promise<void> {
    await this.http.close();
  }
}
