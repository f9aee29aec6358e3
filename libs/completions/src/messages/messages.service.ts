import { Injectable, Logger } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { anthropicErrorType, anthropicRateLimitHeaders, ApiError } from '@app/observability';
import { costMicros } from '../pricing';
import type { AnthropicUsage } from '../providers/anthropic-translate';
import type { AnthropicProvider } from '../providers/anthropic.provider';
import { UpstreamCall, UpstreamError } from '../providers/provider';
import type { ChatRequest } from '../chat/openai-types';
import { ProviderRegistry } from '../providers/provider-registry';
import { DeploymentRouter } from '../routing/deployment-router';
import { readText, sseEvents, transportError } from '../providers/upstream-http';
import { assertModelAllowed, Deployment, ModelRoute, RoutingTable } from '../routing/routing-table';
import { countMessagesPromptTokens, EXACT_CHARS, TokenCounter } from '../tokens';
import { countCompletion, GrantGuard } from '../usage';
import { CompletionCaller, UsageMeta, UsageMeter } from '../usage-meter';
import { mockEvents, mockMessage, mockWait } from './mock-messages';
import {
  CountTokensRequest,
  MessagesRequest,
  validateCountTokensRequest,
  validateMessagesRequest,
} from './messages-request';
import {
  chatToMessage,
  ChunksToEvents,
  MessagesEvent,
  MessagesResponse,
  messagesToChat,
} from './messages-translate';

/** Why the gateway aborted an upstream call (the AbortSignal's reason). */
class Aborted extends Error {
  constructor(readonly by: 'client' | 'timeout') {
    super(by === 'client' ? 'client disconnected' : 'total timeout');
  }
}

/** The client's Anthropic headers passed on to an anthropic deployment. */
export interface AnthropicHeaders {
  version?: string;
  beta?: string;
}

interface Exchange {
  req: MessagesRequest;
  /** The client's body as parsed: what an anthropic deployment receives, max_tokens aside. */
  body: Record<string, unknown>;
  headers: AnthropicHeaders;
  route: ModelRoute;
  stream: boolean;
  promptTokens: number;
  /** The completion tokens granted: the max_tokens sent upstream. */
  maxTokens: number;
  reservation: unknown;
  /** The upstream accepted the request (2xx): from then on it may bill the prompt. */
  accepted: boolean;
  started: number;
  requestId?: string;
  signal: AbortSignal;
  deployment: Deployment | null;
  /** Deployments tried so far (the ledger's attempts). */
  attempts: number;
}

/** Input, output and cache figures of one answer, in Anthropic's terms. */
interface MessagesUsage {
  input: number;
  output: number;
  cacheWrite: number;
  cacheRead: number;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};
const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
const n = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined);

function send(res: ServerResponse, data: string): Promise<void> | undefined {
  if (res.destroyed || res.writableEnded || res.write(data)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** What a Messages stream reported and produced so far (usage from message_start/message_delta). */
class EventTally {
  usage: AnthropicUsage = {};
  finalOutput?: number;
  private head = '';
  private length = 0;

  add(e: MessagesEvent): void {
    if (e.event === 'message_start') this.merge(e.data.message?.usage);
    else if (e.event === 'message_delta') {
      this.merge(e.data.usage);
      this.finalOutput = n(e.data.usage?.output_tokens);
    } else if (e.event === 'content_block_delta' || e.event === 'content_block_start') {
      const d = e.data.delta ?? e.data.content_block ?? {};
      const s = [d.text, d.partial_json, d.thinking, d.name].filter((x) => typeof x === 'string').join('');
      if (this.head.length < EXACT_CHARS) this.head += s.slice(0, EXACT_CHARS - this.head.length);
      this.length += s.length;
    }
  }

  /** Upstream figures where it sent them; output counted from the text when the stream was cut. */
  result(promptEstimate: number): MessagesUsage {
    const counted = new TokenCounter().countHead(this.head, this.length);
    return {
      input: n(this.usage.input_tokens) ?? promptEstimate,
      output: this.finalOutput ?? Math.max(counted, n(this.usage.output_tokens) ?? 0),
      cacheWrite: n(this.usage.cache_creation_input_tokens) ?? 0,
      cacheRead: n(this.usage.cache_read_input_tokens) ?? 0,
    };
  }

  private merge(u: Record<string, unknown> | undefined): void {
    for (const [k, v] of Object.entries(u ?? {}))
      if (n(v) !== undefined) (this.usage as Record<string, number>)[k] = v as number;
  }
}

function usageOfMessage(m: MessagesResponse, promptEstimate: number): MessagesUsage {
  const u = m.usage ?? {};
  return {
    input: n(u.input_tokens) ?? promptEstimate,
    output: n(u.output_tokens) ?? 0,
    cacheWrite: n(u.cache_creation_input_tokens) ?? 0,
    cacheRead: n(u.cache_read_input_tokens) ?? 0,
  };
}

const eventText = (e: MessagesEvent) => `event: ${e.event}\ndata: ${e.raw ?? JSON.stringify(e.data)}\n\n`;

/**
 * Anthropic's Messages API in front (POST /v1/messages, /v1/messages/count_tokens): the
 * same routing table, the same UsageMeter admission and settle as chat completions. An
 * `anthropic` deployment gets the client's body (max_tokens = the grant), an `openai` one
 * a translation (messages-translate.ts), the mock answers natively (mock-messages.ts).
 */
@Injectable()
export class MessagesService {
  private readonly logger = new Logger('Messages');

  constructor(
    private readonly routes: RoutingTable,
    private readonly providers: ProviderRegistry,
    private readonly meter: UsageMeter,
    private readonly config: AppConfig,
    private readonly router: DeploymentRouter,
  ) {}

  async create(
    caller: CompletionCaller,
    body: unknown,
    headers: AnthropicHeaders,
    res: ServerResponse,
    requestId?: string,
  ): Promise<void> {
    const started = performance.now();
    const req = validateMessagesRequest(body);
    const route = this.resolve(req.model);
    const promptTokens = countMessagesPromptTokens(req);
    const admission = await this.meter.admit(caller, {
      model: req.model,
      promptTokens,
      wanted: req.max_tokens,
      maxOutputTokens: route.maxOutputTokens,
      choices: 1,
      pricing: route.maxPricing,
    });
    for (const [k, v] of Object.entries({
      ...admission.headers,
      ...anthropicRateLimitHeaders(admission.headers),
    }))
      res.setHeader(k, v);

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
      body: body as Record<string, unknown>,
      headers,
      route,
      stream: req.stream === true,
      promptTokens,
      maxTokens: admission.grantedCompletionTokens,
      reservation: admission.reservation,
      accepted: false,
      started,
      requestId,
      signal: abort.signal,
      deployment: null,
      attempts: 0,
    };
    try {
      if (ex.stream) await this.streamed(ex, res);
      else await this.unstreamed(ex, res);
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
  }

  /** Anthropic's count_tokens: the anthropic deployment's own count when the model has one, else the gateway's. Not metered. */
  async countTokens(
    caller: CompletionCaller,
    body: unknown,
    headers: AnthropicHeaders,
  ): Promise<{ input_tokens: number }> {
    const req = validateCountTokensRequest(body);
    const route = this.resolve(req.model);
    assertModelAllowed(caller.allowedModels, req.model);
    const d = route.deployments.find((x) => x.provider === 'anthropic');
    if (!d) return { input_tokens: countMessagesPromptTokens(req) };
    const signal = AbortSignal.timeout(this.config.UPSTREAM_TOTAL_TIMEOUT_MS);
    try {
      const res = await this.anthropic(d).post(
        d,
        '/v1/messages/count_tokens',
        this.upstreamHeaders(d, headers, false),
        JSON.stringify({ ...(body as CountTokensRequest), model: d.model }),
        signal,
        { stream: false, timeouts: this.router.timeouts(d) },
      );
      const json = JSON.parse(await readText(res.body, 64 * 1024)) as { input_tokens?: unknown };
      const count = n(json.input_tokens);
      if (count === undefined) throw new Error('no input_tokens');
      return { input_tokens: count };
    } catch (e) {
      const err = e instanceof UpstreamError ? e : transportError(e, signal, d);
      if (err instanceof UpstreamError && !err.retryable && err.apiError.getStatus() < 500)
        throw err.apiError;
      // The upstream's count is a nicety: the gateway's own answers when it cannot be had.
      this.logger.warn(`${d.id}: count_tokens failed (${(err as Error).message}); counted locally`);
      return { input_tokens: countMessagesPromptTokens(req) };
    }
  }

  private resolve(model: string): ModelRoute {
    const route = this.routes.resolve(model);
    if (!route)
      throw ApiError.notFound(
        `model: ${model} (GET /v1/models lists the models of this key)`,
        'model_not_found',
      );
    return route;
  }

  /** POST /v1/messages to an anthropic deployment: the client's body, the grant as max_tokens. */
  private async passThrough(ex: Exchange, d: Deployment, stream: boolean) {
    const res = await this.anthropic(d).post(
      d,
      '/v1/messages',
      this.upstreamHeaders(d, ex.headers, stream),
      this.passThroughBody(ex, d),
      ex.signal,
      { stream, timeouts: this.router.timeouts(d) },
    );
    ex.accepted = true;
    return res;
  }

  private anthropic(d: Deployment): AnthropicProvider {
    return this.providers.for(d) as AnthropicProvider;
  }

  private upstreamHeaders(d: Deployment, h: AnthropicHeaders, stream: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
      'anthropic-version': h.version ?? d.anthropic?.version ?? '2023-06-01',
    };
    if (h.beta) headers['anthropic-beta'] = h.beta;
    if (d.apiKey) headers['x-api-key'] = d.apiKey;
    return headers;
  }

  /** The client's body with the upstream model name and the granted max_tokens, keys in the client's order. */
  private passThroughBody(ex: Exchange, d: Deployment): string {
    return JSON.stringify({ ...ex.body, model: d.model, max_tokens: ex.maxTokens });
  }

  private async complete(ex: Exchange, d: Deployment): Promise<{ msg: MessagesResponse; raw?: string }> {
    if (d.provider === 'mock') {
      await mockWait(d.mock?.latencyMs ?? 0, ex.signal);
      return { msg: mockMessage(ex.req, d, ex.maxTokens) };
    }
    if (d.provider === 'anthropic') {
      const res = await this.passThrough(ex, d, false);
      let raw: string;
      let msg: MessagesResponse;
      try {
        raw = await readText(res.body, MAX_ANSWER_BYTES);
        msg = JSON.parse(raw) as MessagesResponse;
        if (!Array.isArray(msg?.content)) throw new Error('no content');
      } catch (e) {
        throw e instanceof UpstreamError || ex.signal.aborted
          ? transportError(e, ex.signal, d)
          : UpstreamError.badGateway(`The anthropic upstream of ${d.id} sent an unreadable answer`, false);
      }
      return { msg, raw };
    }
    const chat = messagesToChat(ex.req, d.model, ex.maxTokens);
    const c = await this.providers.for(d).complete(this.call(ex, d, chat));
    if (!c.usage)
      c.usage = { prompt_tokens: ex.promptTokens, completion_tokens: countCompletion(c), total_tokens: 0 };
    return { msg: chatToMessage(c, c.model ?? d.model) };
  }

  private call(ex: Exchange, d: Deployment, chat: ChatRequest): UpstreamCall {
    return {
      request: chat,
      deployment: d,
      signal: ex.signal,
      maxTokens: ex.maxTokens,
      timeouts: this.router.timeouts(d),
      onAccepted: () => (ex.accepted = true),
    };
  }

  private async events(ex: Exchange, d: Deployment): Promise<AsyncIterable<MessagesEvent>> {
    if (d.provider === 'mock') {
      await mockWait(d.mock?.latencyMs ?? 0, ex.signal);
      return mockEvents(mockMessage(ex.req, d, ex.maxTokens), d, ex.signal);
    }
    if (d.provider === 'anthropic') {
      const res = await this.passThrough(ex, d, true);
      return this.relay(res.body, ex, d);
    }
    const chat = messagesToChat(ex.req, d.model, ex.maxTokens);
    const items = await this.providers.for(d).stream(this.call(ex, d, chat));
    return this.translated(items, ex);
  }

  private async *relay(
    body: AsyncIterable<Buffer> & { destroy(): void; destroyed: boolean },
    ex: Exchange,
    d: Deployment,
  ): AsyncGenerator<MessagesEvent> {
    const where = `The anthropic upstream of ${d.id}`;
    try {
      for await (const e of sseEvents(body)) {
        let data: Record<string, any>;
        try {
          data = JSON.parse(e.data) as Record<string, any>;
        } catch {
          throw UpstreamError.badGateway(`${where} sent a malformed event`, false);
        }
        const event = e.event ?? (data.type as string);
        if (event === 'error') {
          const type = data.error?.type === 'overloaded_error' ? 503 : 502;
          throw new UpstreamError(
            new ApiError(type, `${where} failed mid-stream: ${data.error?.message ?? 'error event'}`),
            false,
          );
        }
        yield { event, data, raw: e.data };
        if (event === 'message_stop') return;
      }
      throw UpstreamError.badGateway(`${where} ended the stream early`, false);
    } catch (e) {
      throw transportError(e, ex.signal, d);
    } finally {
      if (!body.destroyed) body.destroy();
    }
  }

  private async *translated(
    items: AsyncIterable<import('../providers/provider').StreamItem>,
    ex: Exchange,
  ): AsyncGenerator<MessagesEvent> {
    const t = new ChunksToEvents(ex.req.model, ex.promptTokens);
    const tally = new EventTally();
    // An OpenAI-compatible upstream that ignores the cap is cut at the grant, as on chat.
    const guard = new GrantGuard(ex.maxTokens, 1);
    for await (const item of items) {
      if (!guard.pass(item)) continue;
      for (const e of t.push(item.chunk)) {
        tally.add(e);
        yield e;
      }
      if (guard.cut && guard.done) break;
    }
    const output = guard.cut ? guard.completionTokens() : tally.result(ex.promptTokens).output;
    yield* t.finish({ promptTokens: ex.promptTokens, completionTokens: output });
  }

  /** The deployments in order; the next serves after a retryable failure before the answer started. */
  private async attempt<T>(ex: Exchange, fn: (d: Deployment) => Promise<T>): Promise<T> {
    const { deployments } = ex.route;
    for (let i = 0; ; i++) {
      const d = deployments[i];
      ex.deployment = d;
      ex.attempts = i + 1;
      try {
        return await fn(d);
      } catch (e) {
        if (e instanceof UpstreamError && e.retryable && i + 1 < deployments.length && !ex.signal.aborted) {
          this.logger.warn(`${d.id}: ${e.message}; trying ${deployments[i + 1].id}`);
          continue;
        }
        throw e;
      }
    }
  }

  private async unstreamed(ex: Exchange, res: ServerResponse): Promise<void> {
    let answer: { msg: MessagesResponse; raw?: string };
    try {
      answer = await this.attempt(ex, (d) => this.complete(ex, d));
    } catch (e) {
      return this.failedBeforeAnswer(ex, e);
    }
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(answer.raw ?? JSON.stringify(answer.msg));
    await this.settle(
      ex,
      usageOfMessage(answer.msg, ex.promptTokens),
      200,
      ex.signal.aborted ? 'aborted' : 'success',
    );
  }

  private async streamed(ex: Exchange, res: ServerResponse): Promise<void> {
    let events: AsyncIterable<MessagesEvent>;
    try {
      events = await this.attempt(ex, (d) => this.events(ex, d));
    } catch (e) {
      return this.failedBeforeAnswer(ex, e);
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    const tally = new EventTally();
    let outcome: UsageMeta['status'] = 'success';
    try {
      for await (const e of events) {
        if (ex.signal.aborted) throw ex.signal.reason;
        tally.add(e);
        const wait = send(res, eventText(e));
        if (wait) await wait;
      }
    } catch (e) {
      if (e instanceof Aborted && e.by === 'client') outcome = 'aborted';
      else {
        outcome = 'upstream_error';
        const err = this.toApiError(e);
        this.logger.warn(`${ex.deployment?.id}: stream failed after it started: ${err.message}`);
        const data = {
          type: 'error',
          error: { type: anthropicErrorType(err.getStatus()), message: err.message },
        };
        await send(res, `event: error\ndata: ${JSON.stringify(data)}\n\n`);
      }
    }
    if (outcome !== 'aborted') res.end();
    await this.settle(ex, tally.result(ex.promptTokens), 200, outcome);
  }

  private async failedBeforeAnswer(ex: Exchange, e: unknown): Promise<never> {
    if (e instanceof Aborted && e.by === 'client') {
      await this.settle(
        ex,
        { input: ex.promptTokens, output: 0, cacheRead: 0, cacheWrite: 0 },
        499,
        'aborted',
      );
      throw new ApiError(499, 'Client closed the request', 'invalid_request_error', 'client_closed_request');
    }
    const err = this.toApiError(e);
    if (ex.accepted) {
      // As for chat: an upstream that accepted the request may bill the prompt.
      const status = err.code === 'upstream_timeout' ? 'timeout' : 'upstream_error';
      await this.settle(
        ex,
        { input: ex.promptTokens, output: 0, cacheRead: 0, cacheWrite: 0 },
        err.getStatus(),
        status,
      );
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

  private async settle(
    ex: Exchange,
    u: MessagesUsage,
    httpStatus: number,
    status: UsageMeta['status'],
  ): Promise<void> {
    const pricing = (ex.deployment ?? ex.route.deployments[0]).pricing;
    const promptTokens = u.input + u.cacheWrite + u.cacheRead;
    const usage = {
      promptTokens,
      completionTokens: u.output,
      cacheWriteTokens: u.cacheWrite,
      cacheReadTokens: u.cacheRead,
      costMicros: costMicros(pricing, promptTokens, u.output, {
        cacheWriteTokens: u.cacheWrite,
        cacheReadTokens: u.cacheRead,
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
      stream: ex.stream,
      httpStatus,
      attempts: Math.max(1, ex.attempts),
    };
  }

  private async guard(what: string, fn: () => Promise<unknown> | void): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.logger.error({ err: e }, `usage meter ${what} failed`);
    }
  }
}
