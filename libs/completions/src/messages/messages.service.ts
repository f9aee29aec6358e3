import { Injectable, Logger } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { anthropicErrorType, anthropicRateLimitHeaders, ApiError } from '@app/observability';
import { send, SSE_HEADERS } from '../completions.service';
import { Aborted, BaseCall, Exchange, ExchangeRunner, primed } from '../exchange';
import type { AnthropicUsage } from '../providers/anthropic-translate';
import type { AnthropicProvider } from '../providers/anthropic.provider';
import { Provider, StreamItem, UpstreamError } from '../providers/provider';
import { ProviderRegistry } from '../providers/provider-registry';
import { eventJson, readText, SseStream, transportError, UpstreamResponse } from '../providers/upstream-http';
import { assertModelAllowed, Deployment } from '../routing/routing-table';
import { countMessagesPromptTokens, countTokens, EXACT_CHARS, TokenCounter } from '../tokens';
import { countCompletion, GrantGuard, TokenUsage } from '../usage';
import type { CompletionCaller, UsageMeta } from '../usage-meter';
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

/** The client's Anthropic headers passed on to an anthropic deployment. */
export interface AnthropicHeaders {
  version?: string;
  beta?: string;
}

/** A Messages request on its way through ExchangeRunner (`grant` is the max_tokens sent upstream). */
interface MessagesExchange extends Exchange {
  req: MessagesRequest;
  /** The client's body as parsed: what an anthropic deployment receives, max_tokens aside. */
  body: Record<string, unknown>;
  headers: AnthropicHeaders;
}

/** Input, output and cache figures of one answer, in Anthropic's terms. */
interface MessagesUsage {
  input: number;
  output: number;
  cacheWrite: number;
  cacheRead: number;
}

const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
const n = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined);

/** What a Messages stream reported and produced so far (usage from message_start/message_delta). */
/**
 * An Anthropic stream relayed as is, watched for an upstream that ignores the `max_tokens` it
 * was sent (the grant): cut once its output is past the grant by more than the tokenizers can
 * differ (the gateway counts with tiktoken, Claude with its own), so an honest answer is never
 * cut. Counting starts only past that many bytes (a token is at least one byte).
 */
export class AnthropicGrantWatch {
  readonly cutAt: number;
  private bytes = 0;
  private text = '';
  private tokens: number | null = null;

  constructor(grant: number) {
    this.cutAt = Math.ceil(grant * 1.25) + 32;
  }

  /** Adds an event's produced text; true when the stream must be cut here. */
  over(e: MessagesEvent): boolean {
    if (e.event !== 'content_block_delta') return false;
    const d = e.data.delta ?? {};
    const s = [d.text, d.partial_json, d.thinking].filter((x) => typeof x === 'string').join('');
    if (!s) return false;
    this.bytes += Buffer.byteLength(s);
    if (this.tokens === null) {
      if (this.bytes <= this.cutAt) {
        this.text += s;
        return false;
      }
      this.tokens = countTokens(this.text);
      this.text = '';
    }
    this.tokens += countTokens(s);
    return this.tokens > this.cutAt;
  }
}

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

/** Anthropic's figures as the meter's: input_tokens excludes the cached ones, prompt_tokens includes them. */
function tokenUsage(u: MessagesUsage): TokenUsage {
  return {
    promptTokens: u.input + u.cacheWrite + u.cacheRead,
    completionTokens: u.output,
    ...(u.cacheWrite ? { cacheWriteTokens: u.cacheWrite } : {}),
    ...(u.cacheRead ? { cacheReadTokens: u.cacheRead } : {}),
  };
}

const eventText = (e: MessagesEvent) => `event: ${e.event}\ndata: ${e.raw ?? JSON.stringify(e.data)}\n\n`;

/**
 * Anthropic's Messages API in front (POST /v1/messages, /v1/messages/count_tokens) on the
 * metered path every endpoint takes (ExchangeRunner: route, admit, the deployment attempts
 * with fallover, cooldown, balancing, retries and timeouts, settle or release). An
 * `anthropic` deployment gets the client's body (max_tokens = the grant), an `openai` one a
 * translation (messages-translate.ts), the mock answers natively (mock-messages.ts). Only
 * the rendering is Anthropic's; errors take Anthropic's shape in AnthropicExceptionFilter.
 */
@Injectable()
export class MessagesService {
  private readonly logger = new Logger('Messages');

  constructor(
    private readonly exchanges: ExchangeRunner,
    private readonly providers: ProviderRegistry,
    private readonly config: AppConfig,
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
    // Served by the deployments that serve chat: anthropic natively, openai through a translation.
    const target = this.exchanges.route(req.model, 'chat');
    const stream = req.stream === true;
    await this.exchanges.run(
      caller,
      res,
      {
        endpoint: 'chat',
        target,
        model: req.model,
        stream,
        promptTokens: countMessagesPromptTokens(req),
        wanted: req.max_tokens,
        requestId,
        started,
        headers: (admitted) => anthropicRateLimitHeaders(admitted),
      },
      (e) => {
        const ex: MessagesExchange = Object.assign(e, {
          req,
          body: body as Record<string, unknown>,
          headers,
        });
        return stream ? this.streamed(ex, res) : this.unstreamed(ex, res);
      },
    );
  }

  /** Anthropic's count_tokens: the anthropic deployment's own count when the model has one, else the gateway's. Not metered. */
  async countTokens(
    caller: CompletionCaller,
    body: unknown,
    headers: AnthropicHeaders,
  ): Promise<{ input_tokens: number }> {
    const req = validateCountTokensRequest(body);
    const { deployments } = this.exchanges.route(req.model, 'chat');
    assertModelAllowed(caller.allowedModels, req.model);
    const d = deployments.find((x) => x.provider === 'anthropic');
    if (!d) return { input_tokens: countMessagesPromptTokens(req) };
    const signal = AbortSignal.timeout(this.config.UPSTREAM_TOTAL_TIMEOUT_MS);
    try {
      const res = await this.anthropic(this.providers.for(d)).post(
        d,
        '/v1/messages/count_tokens',
        this.upstreamHeaders(d, headers, false),
        JSON.stringify({ ...(body as CountTokensRequest), model: d.model }),
        signal,
        { stream: false, timeouts: this.exchanges.timeouts(d) },
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

  /** POST /v1/messages to an anthropic deployment: the client's body, the grant as max_tokens. */
  private async passThrough(ex: MessagesExchange, p: Provider, call: BaseCall, stream: boolean) {
    const d = call.deployment;
    const res = await this.anthropic(p).post(
      d,
      '/v1/messages',
      this.upstreamHeaders(d, ex.headers, stream),
      JSON.stringify({ ...ex.body, model: d.model, max_tokens: ex.grant }),
      call.signal,
      { stream, timeouts: call.timeouts },
    );
    call.onAccepted();
    return res;
  }

  private anthropic(p: Provider): AnthropicProvider {
    return p as AnthropicProvider;
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

  /** One attempt's answer (ExchangeRunner.open calls it per deployment tried). */
  private async complete(
    ex: MessagesExchange,
    p: Provider,
    call: BaseCall,
  ): Promise<{ msg: MessagesResponse; raw?: string }> {
    const d = call.deployment;
    if (d.provider === 'mock') {
      await mockWait(d.mock?.latencyMs ?? 0, call.signal);
      return { msg: mockMessage(ex.req, d, ex.grant) };
    }
    if (d.provider === 'anthropic') {
      const res = await this.passThrough(ex, p, call, false);
      let raw: string;
      let msg: MessagesResponse;
      try {
        raw = await readText(res.body, MAX_ANSWER_BYTES);
        msg = JSON.parse(raw) as MessagesResponse;
        if (!Array.isArray(msg?.content)) throw new Error('no content');
      } catch (e) {
        throw e instanceof UpstreamError || call.signal.aborted
          ? transportError(e, call.signal, d)
          : UpstreamError.badGateway(`The anthropic upstream of ${d.id} sent an unreadable answer`, false);
      }
      return { msg, raw };
    }
    const chat = messagesToChat(ex.req, d.model, ex.grant);
    const c = await p.complete({ ...call, request: chat, maxTokens: ex.grant });
    if (!c.usage)
      c.usage = { prompt_tokens: ex.promptTokens, completion_tokens: countCompletion(c), total_tokens: 0 };
    return { msg: chatToMessage(c, c.model ?? d.model) };
  }

  /** One attempt's event stream, its first event already read (a silent stream falls over). */
  private async events(
    ex: MessagesExchange,
    p: Provider,
    call: BaseCall,
  ): Promise<AsyncIterable<MessagesEvent>> {
    const d = call.deployment;
    if (d.provider === 'mock') {
      await mockWait(d.mock?.latencyMs ?? 0, call.signal);
      return mockEvents(mockMessage(ex.req, d, ex.grant), d, call.signal);
    }
    if (d.provider === 'anthropic') {
      const res = await this.passThrough(ex, p, call, true);
      return primed(this.relay(res.body, call.signal, d, ex));
    }
    const chat = messagesToChat(ex.req, d.model, ex.grant);
    const items = await p.stream({ ...call, request: chat, maxTokens: ex.grant });
    return primed(this.translated(items, ex));
  }

  /** The upstream's Messages events as they come (SseStream), cut at the grant for one that ignores it. */
  private relay(
    body: UpstreamResponse['body'],
    signal: AbortSignal,
    d: Deployment,
    ex: MessagesExchange,
  ): AsyncIterable<MessagesEvent> {
    const where = `The anthropic upstream of ${d.id}`;
    const watch = new AnthropicGrantWatch(ex.grant);
    const open = new Set<number>();
    return new SseStream<MessagesEvent>(body, {
      event: (e, push) => {
        const data = eventJson<Record<string, any>>(e.data, where);
        const event = e.event ?? (data.type as string);
        if (event === 'error') {
          const type = data.error?.type === 'overloaded_error' ? 503 : 502;
          throw new UpstreamError(
            new ApiError(type, `${where} failed mid-stream: ${data.error?.message ?? 'error event'}`),
            false,
          );
        }
        const ev: MessagesEvent = { event, data, raw: e.data };
        if (watch.over(ev)) {
          // Past the grant: the open blocks end, the message ends at max_tokens, charged the grant.
          this.exchanges.capViolation(ex, 'stream cut at the grant');
          for (const index of open) push(synthetic('content_block_stop', { index }));
          push(
            synthetic('message_delta', {
              delta: { stop_reason: 'max_tokens', stop_sequence: null },
              usage: { output_tokens: ex.grant },
            }),
          );
          push(synthetic('message_stop', {}));
          return 'cut';
        }
        if (event === 'content_block_start') open.add(Number(data.index));
        else if (event === 'content_block_stop') open.delete(Number(data.index));
        push(ev);
        return event === 'message_stop';
      },
      end: () => {
        throw UpstreamError.badGateway(`${where} ended the stream early`, false);
      },
      error: (e) => transportError(e, signal, d),
    });
  }

  private async *translated(
    items: AsyncIterable<StreamItem>,
    ex: MessagesExchange,
  ): AsyncGenerator<MessagesEvent> {
    const t = new ChunksToEvents(ex.req.model, ex.promptTokens);
    const tally = new EventTally();
    // An OpenAI-compatible upstream that ignores the cap is cut at the grant, as on chat.
    const guard = new GrantGuard(ex.grant, 1);
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

  private async unstreamed(ex: MessagesExchange, res: ServerResponse): Promise<void> {
    let answer: { msg: MessagesResponse; raw?: string };
    try {
      answer = await this.exchanges.open(ex, (p, call) => this.complete(ex, p, call));
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
    }
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    const usage = tokenUsage(usageOfMessage(answer.msg, ex.promptTokens));
    // Charged (and its ledger row durable) before the answer completes, as on chat.
    await this.exchanges.settle(ex, usage, 200, ex.signal.aborted ? 'aborted' : 'success');
    res.end(answer.raw ?? JSON.stringify(answer.msg));
  }

  private async streamed(ex: MessagesExchange, res: ServerResponse): Promise<void> {
    let events: AsyncIterable<MessagesEvent>;
    try {
      events = await this.exchanges.open(ex, (p, call) => this.events(ex, p, call));
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    const tally = new EventTally();
    let outcome: UsageMeta['status'] = 'success';
    try {
      for await (const e of events) {
        if (ex.signal.aborted) throw ex.signal.reason;
        tally.add(e);
        const wait = send(res, eventText(e), ex.signal);
        if (wait) await wait;
      }
    } catch (e) {
      if (e instanceof Aborted && e.by === 'client') outcome = 'aborted';
      else {
        outcome = 'upstream_error';
        const err = this.exchanges.toApiError(e);
        this.logger.warn(`${ex.deployment?.id}: stream failed after it started: ${err.message}`);
        const data = {
          type: 'error',
          error: { type: anthropicErrorType(err.getStatus()), message: err.message },
        };
        await send(res, `event: error\ndata: ${JSON.stringify(data)}\n\n`);
      }
    }
    // Before the stream's end: the row is durable before the client sees its last byte.
    await this.exchanges.settle(ex, tokenUsage(tally.result(ex.promptTokens)), 200, outcome);
    if (outcome !== 'aborted') res.end();
  }
}

/** An event the gateway writes itself (a stream cut at the grant). */
function synthetic(event: string, data: Record<string, unknown>): MessagesEvent {
  const full = { type: event, ...data };
  return { event, data: full, raw: JSON.stringify(full) };
}
