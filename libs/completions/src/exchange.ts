import { Injectable, Logger, Optional } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { costMicros, embeddingPricing, Pricing } from './pricing';
import { Provider, UpstreamError } from './providers/provider';
import { ProviderRegistry } from './providers/provider-registry';
import { Deployment, deploymentsFor, Endpoint, ModelRoute, RoutingTable } from './routing/routing-table';
import type { TokenUsage } from './usage';
import { CompletionCaller, UsageMeta, UsageMeter } from './usage-meter';

/** What every upstream call carries, whatever the endpoint. */
export interface BaseCall {
  deployment: Deployment;
  signal: AbortSignal;
  /** The upstream answered 2xx (providers call it). */
  onAccepted: () => void;
}

/** Why the gateway aborted an upstream call (the AbortSignal's reason). */
export class Aborted extends Error {
  constructor(readonly by: 'client' | 'timeout') {
    super(by === 'client' ? 'client disconnected' : 'total timeout');
  }
}

/** One metered request on its way through: what was asked, what was reserved, where it went. */
export interface Exchange {
  endpoint: Endpoint;
  /** The model name as the client sent it. */
  model: string;
  route: ModelRoute;
  /** The route's deployments that serve the endpoint, tried in order. */
  deployments: Deployment[];
  stream: boolean;
  promptTokens: number;
  reservation: unknown;
  /** Completion tokens per choice the meter granted: the cap sent upstream (chat: a stream is cut there). */
  grant: number;
  /** The upstream answered 2xx: from then on a timeout or error charges the prompt. */
  accepted: boolean;
  started: number;
  requestId?: string;
  signal: AbortSignal;
  /** The deployment tried last (the one that served, once one did). */
  deployment: Deployment | null;
}

export interface ExchangeRequest {
  endpoint: Endpoint;
  /** From `route()`. */
  target: { route: ModelRoute; deployments: Deployment[] };
  model: string;
  stream: boolean;
  promptTokens: number;
  /** The client's completion cap per choice; null = none sent (embeddings: 0). */
  wanted: number | null;
  /** OpenAI `n` (default 1). */
  choices?: number;
  requestId?: string;
  /** performance.now() at the request's arrival. */
  started: number;
}

/** The prices of a deployment for an endpoint (embeddings: `embedding_per_million`, else the input price). */
export function pricingFor(endpoint: Endpoint, p: Pricing): Pricing {
  return endpoint === 'embeddings' ? embeddingPricing(p) : p;
}

/**
 * The one metered path every OpenAI-compatible endpoint takes (chat, embeddings, responses):
 * route, admit through the UsageMeter (refusals before anything is reserved or sent), call
 * the deployments in order, then exactly one settle or release. Callers render the answer.
 */
@Injectable()
export class ExchangeRunner {
  private readonly logger = new Logger('Completions');

  constructor(
    private readonly routes: RoutingTable,
    private readonly providers: ProviderRegistry,
    private readonly meter: UsageMeter,
    private readonly config: AppConfig,
    @Optional() private readonly metrics?: MetricsService,
  ) {}

  /** The route of `model` and its deployments serving `endpoint`: 404 unknown model, 400 endpoint not served. */
  route(model: string, endpoint: Endpoint): { route: ModelRoute; deployments: Deployment[] } {
    const route = this.routes.resolve(model);
    if (!route)
      throw ApiError.notFound(
        `The model "${model}" does not exist (GET /v1/models lists yours)`,
        'model_not_found',
      );
    const deployments = deploymentsFor(route, endpoint);
    if (!deployments.length) {
      const what = { chat: 'chat completions', embeddings: 'embeddings', responses: 'the Responses API' };
      throw ApiError.badRequest(
        `The model "${model}" does not serve ${what[endpoint]} (its deployments: ` +
          `${route.deployments.map((d) => d.provider).join(', ')}; GET /v1/models lists what each model serves)`,
        'unsupported_endpoint',
        'model',
      );
    }
    return { route, deployments };
  }

  /**
   * Admits the request (the meter refuses with 403/429/503), sets its headers on `res`, and
   * arms the abort on client disconnect or the total timeout. `run` gets the exchange;
   * the timers are cleared when it ends.
   */
  async run(
    caller: CompletionCaller,
    res: ServerResponse,
    r: ExchangeRequest,
    run: (ex: Exchange) => Promise<void>,
  ): Promise<void> {
    const { route, deployments } = r.target;
    const { reservation, headers, grantedCompletionTokens } = await this.meter.admit(caller, {
      model: r.model,
      promptTokens: r.promptTokens,
      wanted: r.wanted,
      maxOutputTokens: r.endpoint === 'embeddings' ? null : route.maxOutputTokens,
      choices: r.choices ?? 1,
      pricing: this.maxPricing(r.endpoint, deployments),
    });
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);

    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(new Aborted('client'));
    };
    res.once('close', onClose);
    if (res.destroyed) onClose();
    const timer = setTimeout(
      () => abort.abort(new Aborted('timeout')),
      this.config.UPSTREAM_TOTAL_TIMEOUT_MS,
    );
    const ex: Exchange = {
      endpoint: r.endpoint,
      model: r.model,
      route,
      deployments,
      stream: r.stream,
      promptTokens: r.promptTokens,
      reservation,
      grant: grantedCompletionTokens,
      accepted: false,
      started: r.started,
      requestId: r.requestId,
      signal: abort.signal,
      deployment: null,
    };
    try {
      await run(ex);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
  }

  /**
   * Calls the deployments in order; the next one serves after a retryable failure. `fn` gets
   * the provider and the call's common part (deployment, signal, onAccepted).
   */
  async open<T>(ex: Exchange, fn: (p: Provider, call: BaseCall) => Promise<T>): Promise<T> {
    const { deployments } = ex;
    for (let i = 0; ; i++) {
      const d = deployments[i];
      ex.deployment = d;
      try {
        return await fn(this.providers.for(d), {
          deployment: d,
          signal: ex.signal,
          onAccepted: () => (ex.accepted = true),
        });
      } catch (e) {
        if (e instanceof UpstreamError && e.retryable && i + 1 < deployments.length && !ex.signal.aborted) {
          this.logger.warn(`${d.id}: ${e.message}; trying ${deployments[i + 1].id}`);
          continue;
        }
        throw e;
      }
    }
  }

  /**
   * Nothing reached the client: release the reservation when the upstream never accepted the
   * request; charge the prompt when it did (timeout or failure while reading its answer) or
   * the client left; then throw.
   */
  async failedBeforeAnswer(ex: Exchange, e: unknown): Promise<never> {
    if (e instanceof Aborted && e.by === 'client') {
      // The upstream had the prompt: it is charged; nothing was produced.
      await this.settle(ex, { promptTokens: ex.promptTokens, completionTokens: 0 }, 499, 'aborted');
      throw new ApiError(499, 'Client closed the request', 'invalid_request_error', 'client_closed_request');
    }
    const err = this.toApiError(e);
    if (ex.accepted) {
      // The upstream had accepted it (and may bill the prompt): a timeout or a failure while
      // its answer was read charges the prompt estimate; the ledger status says which.
      const status = err.code === 'upstream_timeout' ? 'timeout' : 'upstream_error';
      await this.settle(ex, { promptTokens: ex.promptTokens, completionTokens: 0 }, err.getStatus(), status);
      throw err;
    }
    await this.guard('release', () =>
      this.meter.release(ex.reservation, this.meta(ex, err.getStatus(), 'upstream_error')),
    );
    throw err;
  }

  toApiError(e: unknown): ApiError {
    if (e instanceof UpstreamError) return e.apiError;
    if (e instanceof ApiError) return e;
    if (e instanceof Aborted)
      return new ApiError(
        504,
        `The upstream did not finish within ${this.config.UPSTREAM_TOTAL_TIMEOUT_MS} ms`,
        'server_error',
        'upstream_timeout',
      );
    this.logger.error({ err: e }, 'unexpected error calling the upstream');
    return new ApiError(502, 'The upstream call failed', 'server_error', 'upstream_error');
  }

  /** Charges the real usage at the serving deployment's prices. */
  async settle(
    ex: Exchange,
    u: TokenUsage,
    httpStatus: number,
    status: UsageMeta['status'],
    detail: Pick<UsageMeta, 'cachedTokens' | 'reasoningTokens'> = {},
  ): Promise<void> {
    const pricing = pricingFor(ex.endpoint, (ex.deployment ?? ex.deployments[0]).pricing);
    const usage = {
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
      costMicros: costMicros(pricing, u.promptTokens, u.completionTokens),
    };
    await this.guard('settle', () =>
      this.meter.settle(ex.reservation, usage, { ...this.meta(ex, httpStatus, status), ...detail }),
    );
  }

  /** An upstream went past the cap it was sent (counted per deployment, logged). */
  capViolation(ex: Exchange, what: string): void {
    const d = ex.deployment?.id ?? ex.deployments[0].id;
    this.metrics?.capViolation(d);
    this.logger.warn(`${d} ignored the completion cap: ${what}`);
  }

  /** A meter failure after the answer must not turn into a client error: log it. */
  async guard(what: string, fn: () => Promise<unknown> | void): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.logger.error({ err: e }, `usage meter ${what} failed`);
    }
  }

  private maxPricing(endpoint: Endpoint, deployments: Deployment[]): Pricing {
    const prices = deployments.map((d) => pricingFor(endpoint, d.pricing));
    return {
      inputPerMillion: Math.max(...prices.map((p) => p.inputPerMillion)),
      outputPerMillion: Math.max(...prices.map((p) => p.outputPerMillion)),
    };
  }

  private meta(ex: Exchange, httpStatus: number, status: UsageMeta['status']): UsageMeta {
    const d = ex.deployment ?? ex.deployments[0];
    return {
      requestId: ex.requestId,
      provider: d.provider,
      ...(d.model !== ex.model ? { model: d.model } : {}),
      status,
      latencyMs: Math.round(performance.now() - ex.started),
      deployment: d.id,
      stream: ex.stream,
      httpStatus,
    };
  }
}
