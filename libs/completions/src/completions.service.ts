import { Injectable, Logger } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { validateChatRequest } from './chat/chat-request';
import type { ChatCompletion, ChatCompletionChunk, ChatRequest, ModelObject } from './chat/openai-types';
import { Aborted, each, Exchange, ExchangeRunner, primed } from './exchange';
import { Provider, StreamItem, UpstreamCall } from './providers/provider';
import { endpointsOf, isModelAllowed, RoutingTable } from './routing/routing-table';
import { countPromptTokens } from './tokens';
import { countCompletion, GrantGuard, StreamTally, TokenUsage, usageOf } from './usage';
import type { CompletionCaller, UsageMeta } from './usage-meter';

/** A chat request on its way through. */
interface ChatExchange extends Exchange {
  req: ChatRequest;
}

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

/**
 * Writes with backpressure: resolves at once, or when the socket drains or closes, or the
 * exchange is aborted (the total timeout bounds a client that stops reading too).
 */
export function send(
  res: ServerResponse,
  data: string | Buffer,
  signal?: AbortSignal,
): Promise<void> | undefined {
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
    private readonly exchanges: ExchangeRunner,
    private readonly config: AppConfig,
  ) {}

  /** The models (names and aliases) the caller's key may use, with the endpoints each serves. */
  listModels(caller: Pick<CompletionCaller, 'allowedModels'>): { object: 'list'; data: ModelObject[] } {
    const data = this.routes
      .names()
      .filter(({ name }) => isModelAllowed(caller.allowedModels, name))
      .map(({ name, route }) => ({
        id: name,
        object: 'model' as const,
        created: this.created,
        owned_by: route.deployments[0].provider,
        endpoints: endpointsOf(route),
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
    const target = this.exchanges.route(req.model, 'chat');
    // The key's allowed models are checked by the meter's admit (the quota lib counts the
    // refusal), before anything is reserved or sent upstream.
    const promptTokens = countPromptTokens(req);
    const stream = req.stream === true;
    await this.exchanges.run(
      caller,
      res,
      {
        endpoint: 'chat',
        target,
        model: req.model,
        stream,
        promptTokens,
        wanted: req.max_completion_tokens ?? req.max_tokens ?? null,
        choices: req.n ?? 1,
        requestId,
        started,
      },
      (ex) => {
        const chat: ChatExchange = Object.assign(ex, { req });
        return stream ? this.streamed(chat, res) : this.unstreamed(chat, res);
      },
    );
  }

  private async unstreamed(ex: ChatExchange, res: ServerResponse): Promise<void> {
    let completion: ChatCompletion;
    try {
      completion = await this.open(ex, (p, call) => p.complete(call));
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
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
      this.exchanges.capViolation(
        ex,
        `${usage.completionTokens} completion tokens against a cap of ${ex.grant}`,
      );
    const json = JSON.stringify(completion);
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    // Charged (and its ledger row durable) before the answer completes: a crash after the
    // client has its answer cannot lose the row (README "Ledger").
    await this.exchanges.settle(ex, usage, 200, ex.signal.aborted ? 'aborted' : 'success');
    res.end(json);
  }

  private async streamed(ex: ChatExchange, res: ServerResponse): Promise<void> {
    let items: AsyncIterable<StreamItem>;
    try {
      items = await this.open(ex, async (p, call) => primed(await p.stream(call)));
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
    }
    res.writeHead(200, SSE_HEADERS);
    const includeUsage = ex.req.stream_options?.include_usage === true;
    const tally = new StreamTally();
    const guard = new GrantGuard(ex.grant, ex.req.n ?? 1);
    let outcome: UsageMeta['status'] = 'success';
    let wrote = false;
    try {
      const relayed = each(items, (item) => {
        if (ex.signal.aborted) throw ex.signal.reason;
        if (!guard.pass(item)) return;
        tally.add(item);
        const out = this.render(item, includeUsage);
        // an upstream that ignores the cap: its stream ends here (the rest is not read)
        const end = guard.cut && guard.done;
        if (out === undefined) return end;
        wrote = true;
        const wait = send(res, out, ex.signal);
        return wait ? wait.then(() => end) : end;
      });
      // The headers go out with the first chunk (already waiting: `primed`), in one write;
      // on their own when it was not relayed.
      if (!wrote) res.flushHeaders();
      await relayed;
    } catch (e) {
      if (e instanceof Aborted && e.by === 'client') {
        outcome = 'aborted';
      } else {
        outcome = 'upstream_error';
        const err = this.exchanges.toApiError(e);
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
      this.exchanges.capViolation(ex, 'stream cut at the grant');
    }
    if (outcome !== 'aborted') {
      if ((outcome === 'success' || outcome === 'cut') && includeUsage && (!tally.usage || guard.cut)) {
        // The upstream ignored stream_options: the client still gets the usage it asked for.
        await send(res, `data: ${JSON.stringify(this.usageChunk(ex, tally.last, usage))}\n\n`);
      }
    }
    // Before the stream's end: the row is durable before the client sees [DONE].
    await this.exchanges.settle(ex, usage, 200, outcome);
    if (outcome !== 'aborted') res.end('data: [DONE]\n\n');
  }

  /** The chat call for each deployment tried. */
  private open<T>(ex: ChatExchange, fn: (p: Provider, call: UpstreamCall) => Promise<T>): Promise<T> {
    return this.exchanges.open(ex, (p, call) =>
      fn(p, {
        deployment: call.deployment,
        signal: call.signal,
        timeouts: call.timeouts,
        onAccepted: call.onAccepted,
        request: ex.req,
        maxTokens: ex.grant,
      }),
    );
  }

  /**
   * The SSE event for a chunk: the upstream's own bytes when nothing changed; the usage
   * chunk is dropped for clients that did not ask for it.
   */
  private render(item: StreamItem, includeUsage: boolean): string | Buffer | undefined {
    const { chunk, raw } = item;
    if (chunk.usage == null || includeUsage) return item.bytes ?? `data: ${raw ?? JSON.stringify(chunk)}\n\n`;
    if (!chunk.choices?.length) return undefined;
    const { usage: _usage, ...rest } = chunk;
    return `data: ${JSON.stringify(rest)}\n\n`;
  }

  private usageChunk(
    ex: ChatExchange,
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
}
