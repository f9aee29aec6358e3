import { Injectable, Logger, Optional } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { costMicros, embeddingPricing, Pricing } from './pricing';
import { AttemptTimeouts, Provider, UpstreamError } from './providers/provider';
import { ProviderRegistry } from './providers/provider-registry';
import type { ItemSource, ItemStep } from './providers/upstream-http';
import { DeploymentRouter } from './routing/deployment-router';
import { Deployment, deploymentsFor, Endpoint, ModelRoute, RoutingTable } from './routing/routing-table';
import { RequestSignal } from './request-signal';
import type { TokenUsage } from './usage';
import { CompletionCaller, MeteredUsage, UsageMeta, UsageMeter } from './usage-meter';

/** What every upstream call carries, whatever the endpoint. */
export interface BaseCall {
  deployment: Deployment;
  /** The attempt's signal: the exchange's, cut shorter by the deployment's `total_ms`. */
  signal: AbortSignal;
  /** The attempt's timeouts (DeploymentRouter.timeouts). */
  timeouts: AttemptTimeouts;
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
  /** The route's deployments that serve the endpoint (DeploymentRouter.plan orders and filters them). */
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
  /** Upstream calls made for this request (retries and fallovers included). */
  attempts: number;
  /** Run when the exchange ends: the serving attempt's timer and in-flight count. */
  cleanup: (() => void)[];
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
  /** More response headers derived from the admission's (Messages: `anthropic-ratelimit-*`). */
  headers?: (admitted: Record<string, string>) => Record<string, string>;
}

/** The prices of a deployment for an endpoint (embeddings: `embedding_per_million`, else the input price). */
export function pricingFor(endpoint: Endpoint, p: Pricing): Pricing {
  return endpoint === 'embeddings' ? embeddingPricing(p) : p;
}

/** How a failed attempt ended, for gateway_upstream_*: timeout, http_4xx (429 included), error (5xx, transport). */
function outcomeOf(e: unknown): string {
  const status = e instanceof UpstreamError ? e.apiError.getStatus() : 500;
  return status === 504 ? 'timeout' : status < 500 ? 'http_4xx' : 'error';
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function isSource<T>(items: AsyncIterable<T>): items is ItemSource<T> {
  return typeof (items as Partial<ItemSource<T>>).each === 'function';
}

/**
 * Waits for a stream's first item: having it inside `open` is how a stream proves it started
 * before the client sees a byte (a stream silent past its first-byte timeout falls over).
 * An ItemSource (SseStream) keeps it queued and is returned as is; any other stream's first
 * item is pulled and replayed, the rest comes straight from its own iterator.
 */
export async function primed<T>(items: AsyncIterable<T>): Promise<AsyncIterable<T>> {
  if (isSource(items)) {
    await items.ready();
    return items;
  }
  const it = items[Symbol.asyncIterator]();
  let first: IteratorResult<T> | undefined = await it.next();
  const iterator: AsyncIterator<T> = {
    next: () => {
      if (!first) return it.next();
      const r = first;
      first = undefined;
      return Promise.resolve(r);
    },
    return: (value?: unknown) => {
      first = undefined;
      return it.return
        ? it.return(value)
        : Promise.resolve({ value: undefined as unknown as T, done: true as const });
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/**
 * Runs `fn` on each item of a stream, in order, until the stream ends or `fn` ends it
 * (ItemStep). An ItemSource hands its items over as they come, without a promise per item;
 * any other stream is iterated.
 */
export async function each<T>(items: AsyncIterable<T>, fn: (item: T) => ItemStep): Promise<void> {
  if (isSource(items)) return items.each(fn);
  for await (const item of items) {
    let step = fn(item);
    if (step instanceof Promise) step = await step;
    if (step === true) break;
  }
}

/**
 * The one metered path every endpoint takes (chat, embeddings, responses, Anthropic messages):
 * route, admit through the UsageMeter (refusals before anything is reserved or sent), try
 * the deployments (DeploymentRouter: fallover, cooldown, balancing, retries, timeouts), then
 * exactly one settle or release. Callers render the answer.
 */
@Injectable()
export class ExchangeRunner {
  private readonly logger = new Logger('Completions');

  constructor(
    private readonly routes: RoutingTable,
    private readonly providers: ProviderRegistry,
    private readonly meter: UsageMeter,
    private readonly config: AppConfig,
    private readonly router: DeploymentRouter,
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
    // (no object spread on the hot path: issue 18, docs/BENCHMARKS.md "Syscalls per request")
    for (const k of Object.keys(headers)) res.setHeader(k, headers[k]);
    const more = r.headers?.(headers);
    if (more) for (const k of Object.keys(more)) res.setHeader(k, more[k]);

    const abort = new RequestSignal();
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
      signal: abort.asSignal,
      deployment: null,
      attempts: 0,
      cleanup: [],
    };
    try {
      await run(ex);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      for (const fn of ex.cleanup) fn();
    }
  }

  /**
   * Tries the exchange's deployments (DeploymentRouter.plan: a probe, then the healthy ones in
   * the model's strategy order) until one answers; nothing has reached the client yet. A
   * transient failure retries the same deployment after a jittered back-off (UPSTREAM_RETRIES
   * per request, within the total timeout); any failure that allows it falls over to the next.
   * When some deployment refused with 429, the client gets a 429 with the shortest Retry-After.
   * `fn` gets the provider and the call's common part (deployment, signal, timeouts, onAccepted).
   */
  async open<T>(ex: Exchange, fn: (p: Provider, call: BaseCall) => Promise<T>): Promise<T> {
    const plan = await this.router.plan(ex.route, ex.deployments);
    let retries = this.config.UPSTREAM_RETRIES;
    let last: UpstreamError | undefined;
    let limited: UpstreamError | undefined;
    const waits = plan.resting.filter((r) => r.reason === 'retry_after').map((r) => r.waitMs);
    for (const [i, d] of plan.candidates.entries()) {
      if (this.router.saturated(d)) {
        last = UpstreamError.saturated(d.id, d.maxConnections);
        continue;
      }
      for (let retry = 0; ; retry++) {
        ex.deployment = d;
        ex.attempts++;
        const startedAt = Date.now();
        const attempt = this.attempt(ex, d);
        try {
          const out = await fn(this.providers.for(d), {
            deployment: d,
            signal: attempt.signal,
            timeouts: this.router.timeouts(d),
            onAccepted: () => (ex.accepted = true),
          });
          ex.cleanup.push(() => attempt.end(ex.signal.aborted ? 'aborted' : 'ok'));
          await this.router.succeeded(d);
          return out;
        } catch (e) {
          attempt.end(ex.signal.aborted ? 'aborted' : outcomeOf(e));
          if (ex.signal.aborted) throw ex.signal.reason;
          if (!(e instanceof UpstreamError) || !e.retryable) throw e;
          const backoff = this.backoff(retry);
          if (e.kind === 'transient' && retries > 0 && this.timeLeft(ex) > backoff) {
            retries--;
            this.router.retrying(d, e);
            this.logger.warn(`${d.id}: ${e.message}; retrying in ${backoff} ms`);
            await pause(backoff, ex.signal);
            continue;
          }
          await this.router.failed(d, e, startedAt);
          last = e;
          if (e.kind === 'rate_limited') {
            limited = e;
            if (e.retryAfterMs !== undefined) waits.push(e.retryAfterMs);
          }
          const next = plan.candidates[i + 1];
          this.logger.warn(`${d.id}: ${e.message}${next ? `; trying ${next.id}` : ''}`);
          break;
        }
      }
    }
    if (limited) throw this.rateLimited(limited, waits);
    throw last;
  }

  /** The timeouts of a call to `d` outside an exchange (e.g. GET /v1/responses/{id}). */
  timeouts(d: Deployment): AttemptTimeouts {
    return this.router.timeouts(d);
  }

  /** One upstream call's signal (the exchange's, cut shorter by a deployment's `total_ms`) and its end. */
  private attempt(ex: Exchange, d: Deployment): { signal: AbortSignal; end: (outcome: string) => void } {
    const leave = this.router.begin(d);
    const totalMs = d.routing.timeouts.totalMs;
    if (totalMs === undefined) return { signal: ex.signal, end: leave };
    const ac = new RequestSignal();
    const relay = () => ac.abort(ex.signal.reason);
    ex.signal.addEventListener('abort', relay, { once: true });
    const timer = setTimeout(
      () =>
        ac.abort(
          UpstreamError.timeout(
            `The ${d.provider} upstream of ${d.id} did not finish within ${totalMs} ms`,
            true,
          ),
        ),
      totalMs,
    );
    return {
      signal: ac.asSignal,
      end: (outcome) => {
        clearTimeout(timer);
        ex.signal.removeEventListener('abort', relay);
        leave(outcome);
      },
    };
  }

  /** Exponential back-off with equal jitter: half fixed, half random. */
  private backoff(retry: number): number {
    const step = Math.min(this.config.UPSTREAM_RETRY_BACKOFF_MS * 2 ** retry, 5000);
    return Math.round(step / 2 + Math.random() * (step / 2));
  }

  private timeLeft(ex: Exchange): number {
    return this.config.UPSTREAM_TOTAL_TIMEOUT_MS - (performance.now() - ex.started);
  }

  /** Every deployment refused or failed, at least one with 429: the shortest wait any of them asked for. */
  private rateLimited(e: UpstreamError, waits: number[]): ApiError {
    const { apiError } = e;
    const headers = { ...apiError.headers };
    if (waits.length) headers['retry-after'] = String(Math.max(1, Math.ceil(Math.min(...waits) / 1000)));
    return new ApiError(429, apiError.message, apiError.type, apiError.code, headers, apiError.param);
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

  /** Charges the real usage at the serving deployment's prices (cached prompt tokens at their own). */
  async settle(
    ex: Exchange,
    u: TokenUsage,
    httpStatus: number,
    status: UsageMeta['status'],
    detail: Pick<UsageMeta, 'cachedTokens' | 'reasoningTokens'> = {},
  ): Promise<void> {
    const pricing = pricingFor(ex.endpoint, (ex.deployment ?? ex.deployments[0]).pricing);
    const cached = { cacheWriteTokens: u.cacheWriteTokens, cacheReadTokens: u.cacheReadTokens };
    const usage: MeteredUsage = {
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
      costMicros: costMicros(pricing, u.promptTokens, u.completionTokens, cached),
    };
    if (u.cacheWriteTokens) usage.cacheWriteTokens = u.cacheWriteTokens;
    if (u.cacheReadTokens) usage.cacheReadTokens = u.cacheReadTokens;
    const meta = Object.assign(this.meta(ex, httpStatus, status), detail);
    await this.guard('settle', () => this.meter.settle(ex.reservation, usage, meta));
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
      // A prompt may be written to the provider's cache: reserved at the dearer of the two.
      inputPerMillion: Math.max(
        ...prices.map((p) => Math.max(p.inputPerMillion, p.cacheWritePerMillion ?? 0)),
      ),
      outputPerMillion: Math.max(...prices.map((p) => p.outputPerMillion)),
    };
  }

  private meta(ex: Exchange, httpStatus: number, status: UsageMeta['status']): UsageMeta {
    const d = ex.deployment ?? ex.deployments[0];
    return {
      requestId: ex.requestId,
      provider: d.provider,
      model: d.model !== ex.model ? d.model : undefined,
      status,
      latencyMs: Math.round(performance.now() - ex.started),
      deployment: d.id,
      attempts: ex.attempts,
      stream: ex.stream,
      httpStatus,
    };
  }
}
