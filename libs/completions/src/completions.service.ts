import { Injectable, Logger, Optional } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { validateChatRequest } from './chat/chat-request';
import type { ChatCompletion, ChatCompletionChunk, ChatRequest, ModelObject } from './chat/openai-types';
import { costMicros } from './pricing';
import { Provider, StreamItem, UpstreamCall, UpstreamError } from './providers/provider';
import { ProviderRegistry } from './providers/provider-registry';
import { DeploymentRouter } from './routing/deployment-router';
import { Deployment, isModelAllowed, ModelRoute, RoutingTable } from './routing/routing-table';
import { countPromptTokens } from './tokens';
import { countCompletion, GrantGuard, StreamTally, TokenUsage, usageOf } from './usage';
import { CompletionCaller, UsageMeta, UsageMeter } from './usage-meter';

/** Why the gateway aborted an upstream call (the AbortSignal's reason). */
class Aborted extends Error {
  constructor(readonly by: 'client' | 'timeout') {
    super(by === 'client' ? 'client disconnected' : 'total timeout');
  }
}

/** One chat request on its way through: what was asked, what was reserved, where it went. */
interface Exchange {
  req: ChatRequest;
  route: ModelRoute;
  stream: boolean;
  promptTokens: number;
  reservation: unknown;
  /** Completion tokens per choice the meter granted: the cap sent upstream, where a stream is cut. */
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

/** Replays a stream's first item: pulling it is how a stream proves it started before the client sees a byte. */
async function primed(items: AsyncIterable<StreamItem>): Promise<AsyncIterable<StreamItem>> {
  const it = items[Symbol.asyncIterator]();
  const first = await it.next();
  return (async function* () {
    try {
      if (first.done) return;
      yield first.value;
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await it.return?.();
    }
  })();
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

/**
 * Writes with backpressure: resolves at once, or when the socket drains or closes, or the
 * exchange is aborted (the total timeout bounds a client that stops reading too).
 */
function send(res: ServerResponse, data: string, signal?: AbortSignal): Promise<void> | undefined {
  if (res.destroyed || res.writableEnded || res.write(data)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
    signal?.addEventListener('abort', done);
  });
}

/**
 * The OpenAI-compatible chat path (design: ../shared/DESIGN.md section 2, steps 2-4):
 * validate, route, admit through the UsageMeter, call the deployments in order, answer
 * (JSON or SSE), settle the real usage.
 */
@Injectable()
export class CompletionsService {
  private readonly logger = new Logger('Completions');
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly routes: RoutingTable,
    private readonly providers: ProviderRegistry,
    private readonly meter: UsageMeter,
    private readonly config: AppConfig,
    private readonly router: DeploymentRouter,
    @Optional() private readonly metrics?: MetricsService,
  ) {}

  /** The models (names and aliases) the caller's key may use. */
  listModels(caller: Pick<CompletionCaller, 'allowedModels'>): { object: 'list'; data: ModelObject[] } {
    const data = this.routes
      .names()
      .filter(({ name }) => isModelAllowed(caller.allowedModels, name))
      .map(({ name, route }) => ({
        id: name,
        object: 'model' as const,
        created: this.created,
        owned_by: route.deployments[0].provider,
      }));
    return { object: 'list', data };
  }

  /**
   * Answers one chat request on `res`: JSON, or SSE when `stream` is true. Errors before the
   * answer starts are thrown (ApiError; the exception filter renders them); errors after it
   * started are reported in the stream.
   */
  async chat(
    caller: CompletionCaller,
    body: unknown,
    res: ServerResponse,
    requestId?: string,
  ): Promise<void> {
    const started = performance.now();
    const req = validateChatRequest(body);
    const route = this.routes.resolve(req.model);
    if (!route)
      throw ApiError.notFound(
        `The model "${req.model}" does not exist (GET /v1/models lists yours)`,
        'model_not_found',
      );
    // The key's allowed models are checked by the meter's admit (the quota lib counts the
    // refusal), before anything is reserved or sent upstream.
    const promptTokens = countPromptTokens(req);
    const { reservation, headers, grantedCompletionTokens } = await this.meter.admit(caller, {
      model: req.model,
      promptTokens,
      wanted: req.max_completion_tokens ?? req.max_tokens ?? null,
      maxOutputTokens: route.maxOutputTokens,
      choices: req.n ?? 1,
      pricing: route.maxPricing,
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
      req,
      route,
      stream: req.stream === true,
      promptTokens,
      reservation,
      grant: grantedCompletionTokens,
      accepted: false,
      started,
      requestId,
      signal: abort.signal,
      deployment: null,
      attempts: 0,
      cleanup: [],
    };
    try {
      if (ex.stream) await this.streamed(ex, res);
      else await this.unstreamed(ex, res);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
      for (const fn of ex.cleanup) fn();
    }
  }

  private async unstreamed(ex: Exchange, res: ServerResponse): Promise<void> {
    let completion: ChatCompletion;
    try {
      completion = await this.open(ex, (p, call) => p.complete(call));
    } catch (e) {
      return this.failedBeforeAnswer(ex, e);
    }
    let usage = usageOf(completion.usage);
    if (!usage) {
      usage = { promptTokens: ex.promptTokens, completionTokens: countCompletion(completion) };
      completion.usage = {
        prompt_tokens: usage.promptTokens,
        completion_tokens: usage.completionTokens,
        total_tokens: usage.promptTokens + usage.completionTokens,
      };
    }
    if (usage.completionTokens > ex.grant * (ex.req.n ?? 1))
      // the provider billed it: charged in full (README "Quotas", overspend bound)
      this.capViolation(ex, `${usage.completionTokens} completion tokens against a cap of ${ex.grant}`);
    const json = JSON.stringify(completion);
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    // Charged (and its ledger row durable) before the answer completes: a crash after the
    // client has its answer cannot lose the row (README "Ledger").
    await this.settle(ex, usage, 200, ex.signal.aborted ? 'aborted' : 'success');
    res.end(json);
  }

  private async streamed(ex: Exchange, res: ServerResponse): Promise<void> {
    let items: AsyncIterable<StreamItem>;
    try {
      items = await this.open(ex, async (p, call) => primed(await p.stream(call)));
    } catch (e) {
      return this.failedBeforeAnswer(ex, e);
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    const includeUsage = ex.req.stream_options?.include_usage === true;
    const tally = new StreamTally();
    const guard = new GrantGuard(ex.grant, ex.req.n ?? 1);
    let outcome: UsageMeta['status'] = 'success';
    try {
      for await (const item of items) {
        if (ex.signal.aborted) throw ex.signal.reason;
        if (!guard.pass(item)) continue;
        tally.add(item);
        const out = this.render(item, includeUsage);
        if (out !== undefined) {
          const wait = send(res, out, ex.signal);
          if (wait) await wait;
        }
        // an upstream that ignores the cap: its stream ends here (leaving the loop closes it)
        if (guard.cut && guard.done) break;
      }
    } catch (e) {
      if (e instanceof Aborted && e.by === 'client') {
        outcome = 'aborted';
      } else {
        outcome = 'upstream_error';
        const err = this.toApiError(e);
        this.logger.warn(`${ex.deployment?.id}: stream failed after it started: ${err.message}`);
        await send(res, `data: ${JSON.stringify(err.toBody(ex.requestId))}\n\n`);
      }
    }
    let usage: TokenUsage = tally.usage ?? {
      promptTokens: tally.promptTokens ?? ex.promptTokens,
      completionTokens: tally.completionTokens(),
    };
    if (guard.cut) {
      // charged what was streamed: at most the grant per choice
      usage = {
        promptTokens: tally.promptTokens ?? ex.promptTokens,
        completionTokens: guard.completionTokens(),
      };
      if (outcome === 'success') outcome = 'cut';
      this.capViolation(ex, 'stream cut at the grant');
    }
    if (outcome !== 'aborted') {
      if ((outcome === 'success' || outcome === 'cut') && includeUsage && (!tally.usage || guard.cut)) {
        // The upstream ignored stream_options: the client still gets the usage it asked for.
        await send(res, `data: ${JSON.stringify(this.usageChunk(ex, tally.last, usage))}\n\n`);
      }
    }
    // Before the stream's end: the row is durable before the client sees [DONE].
    await this.settle(ex, usage, 200, outcome);
    if (outcome !== 'aborted') res.end('data: [DONE]\n\n');
  }

  /**
   * Tries the request's deployments (DeploymentRouter.plan: a probe, then the healthy ones in
   * the model's strategy order) until one answers; nothing has reached the client yet. A
   * transient failure retries the same deployment after a jittered back-off (UPSTREAM_RETRIES
   * per request, within the total timeout); any failure that allows it falls over to the next.
   * When some deployment refused with 429, the client gets a 429 with the shortest Retry-After.
   */
  private async open<T>(ex: Exchange, fn: (p: Provider, call: UpstreamCall) => Promise<T>): Promise<T> {
    const plan = await this.router.plan(ex.route);
    let retries = this.config.UPSTREAM_RETRIES;
    let last: UpstreamError | undefined;
    let limited: UpstreamError | undefined;
    const waits = plan.resting.filter((r) => r.reason === 'retry_after').map((r) => r.waitMs);
    for (const [i, d] of plan.candidates.entries()) {
      for (let retry = 0; ; retry++) {
        ex.deployment = d;
        ex.attempts++;
        const attempt = this.attempt(ex, d);
        try {
          const out = await fn(this.providers.for(d), {
            request: ex.req,
            deployment: d,
            signal: attempt.signal,
            timeouts: this.router.timeouts(d),
            maxTokens: ex.grant,
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
          await this.router.failed(d, e);
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

  /** One upstream call's signal (the exchange's, cut shorter by a deployment's `total_ms`) and its end. */
  private attempt(ex: Exchange, d: Deployment): { signal: AbortSignal; end: (outcome: string) => void } {
    const leave = this.router.begin(d);
    const totalMs = d.routing.timeouts.totalMs;
    if (totalMs === undefined) return { signal: ex.signal, end: leave };
    const ac = new AbortController();
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
      signal: ac.signal,
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
  private async failedBeforeAnswer(ex: Exchange, e: unknown): Promise<never> {
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

  private toApiError(e: unknown): ApiError {
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

  /** The SSE line for a chunk; the usage chunk is dropped for clients that did not ask for it. */
  private render(item: StreamItem, includeUsage: boolean): string | undefined {
    const { chunk, raw } = item;
    if (chunk.usage == null || includeUsage) return `data: ${raw ?? JSON.stringify(chunk)}\n\n`;
    if (!chunk.choices?.length) return undefined;
    const { usage: _usage, ...rest } = chunk;
    return `data: ${JSON.stringify(rest)}\n\n`;
  }

  private usageChunk(
    ex: Exchange,
    last: ChatCompletionChunk | undefined,
    u: TokenUsage,
  ): ChatCompletionChunk {
    return {
      id: last?.id ?? '',
      object: 'chat.completion.chunk',
      created: last?.created ?? Math.floor(Date.now() / 1000),
      model: last?.model ?? ex.route.name,
      choices: [],
      usage: {
        prompt_tokens: u.promptTokens,
        completion_tokens: u.completionTokens,
        total_tokens: u.promptTokens + u.completionTokens,
      },
    };
  }

  private async settle(
    ex: Exchange,
    u: TokenUsage,
    httpStatus: number,
    status: UsageMeta['status'],
  ): Promise<void> {
    const pricing = (ex.deployment ?? ex.route.deployments[0]).pricing;
    const usage = {
      ...u,
      costMicros: costMicros(pricing, u.promptTokens, u.completionTokens, {
        cacheReadTokens: u.cacheReadTokens,
      }),
    };
    await this.guard('settle', () =>
      this.meter.settle(ex.reservation, usage, this.meta(ex, httpStatus, status)),
    );
  }

  private meta(ex: Exchange, httpStatus: number, status: UsageMeta['status']): UsageMeta {
    const d = ex.deployment ?? ex.route.deployments[0];
    return {
      requestId: ex.requestId,
      provider: d.provider,
      ...(d.model !== ex.req.model ? { model: d.model } : {}),
      status,
      latencyMs: Math.round(performance.now() - ex.started),
      deployment: d.id,
      attempts: ex.attempts,
      stream: ex.stream,
      httpStatus,
    };
  }

  private capViolation(ex: Exchange, what: string): void {
    const d = ex.deployment?.id ?? ex.route.deployments[0].id;
    this.metrics?.capViolation(d);
    this.logger.warn(`${d} ignored the completion cap: ${what}`);
  }

  /** A meter failure after the answer must not turn into a client error: log it. */
  private async guard(what: string, fn: () => Promise<unknown> | void): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.logger.error({ err: e }, `usage meter ${what} failed`);
    }
  }
}
