import type { ChatCompletion } from '../chat/openai-types';
import type { Deployment } from '../routing/routing-table';
import {
  AnthropicResponse,
  AnthropicStreamTranslator,
  fromAnthropicResponse,
  toAnthropicRequest,
} from './anthropic-translate';
import {
  AttemptTimeouts,
  cappedRequest,
  Provider,
  StreamItem,
  UpstreamCall,
  UpstreamError,
} from './provider';
import {
  ParsedUpstreamError,
  eventJson,
  readText,
  SseStream,
  statusError,
  streamTiming,
  transportError,
  UpstreamHttp,
  UpstreamResponse,
} from './upstream-http';

const MAX_ANSWER_BYTES = 32 * 1024 * 1024;

/** `{"type":"error","error":{"type":"invalid_request_error","message":"..."}}` */
export function parseAnthropicError(json: unknown): ParsedUpstreamError | undefined {
  const e = (json as { error?: { type?: unknown; message?: unknown } })?.error;
  if (typeof e !== 'object' || e === null) return undefined;
  const type = typeof e.type === 'string' ? e.type : undefined;
  return {
    message: typeof e.message === 'string' ? e.message : undefined,
    // Anthropic's types are OpenAI's too, except these.
    type:
      type === 'rate_limit_error'
        ? 'rate_limit_exceeded'
        : type === 'not_found_error'
          ? 'invalid_request_error'
          : type,
    code: type,
  };
}

/** Anthropic's Messages API, translated both ways (anthropic-translate.ts). */
export class AnthropicProvider extends Provider {
  constructor(private readonly http: UpstreamHttp) {
    super();
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    const res = await this.send(call, false);
    let msg: AnthropicResponse;
    try {
      msg = JSON.parse(await readText(res.body, MAX_ANSWER_BYTES)) as AnthropicResponse;
      if (!Array.isArray(msg?.content)) throw new Error('no content');
    } catch (e) {
      throw e instanceof UpstreamError || call.signal.aborted
        ? transportError(e, call.signal, call.deployment)
        : UpstreamError.badGateway(
            `The anthropic upstream of ${call.deployment.id} sent an unreadable answer`,
            false,
          );
    }
    return fromAnthropicResponse(msg);
  }

  async stream(call: UpstreamCall): Promise<AsyncIterable<StreamItem>> {
    const startedAt = Date.now();
    return this.chunks(await this.send(call, true), call, startedAt);
  }

  /** Anthropic's events translated to OpenAI chunks as they come (SseStream). */
  private chunks(res: UpstreamResponse, call: UpstreamCall, startedAt: number): AsyncIterable<StreamItem> {
    const t = new AnthropicStreamTranslator(call.deployment.model);
    const where = `The anthropic upstream of ${call.deployment.id}`;
    return new SseStream<StreamItem>(
      res.body,
      {
        event: (event, push) => {
          const data = eventJson<Record<string, unknown>>(event.data, where);
          const out = t.push(event.event ?? (data.type as string), data);
          if (out.error) throw UpstreamError.badGateway(`${where} failed mid-stream: ${out.error}`, false);
          for (const [i, chunk] of out.chunks.entries())
            push(
              i === 0 && out.promptTokens !== undefined
                ? { chunk, promptTokens: out.promptTokens }
                : { chunk },
            );
          return out.done;
        },
        end: () => {
          throw UpstreamError.badGateway(`${where} ended the stream early`, false);
        },
        error: (e) => transportError(e, call.signal, call.deployment),
      },
      streamTiming(call, startedAt),
    );
  }

  /**
   * A Messages API call as the client made it (the pass-through of POST /v1/messages):
   * `body` goes as given; non-2xx answers become UpstreamErrors like the translated calls'.
   */
  async post(
    d: Deployment,
    path: string,
    headers: Record<string, string>,
    body: string,
    signal: AbortSignal,
    opts: { stream: boolean; timeouts: AttemptTimeouts },
  ): Promise<UpstreamResponse> {
    const res = await this.http.post(d, path, headers, body, signal, opts);
    if (res.statusCode < 200 || res.statusCode >= 300) throw await statusError(res, d, parseAnthropicError);
    return res;
  }

  private async send(call: UpstreamCall, stream: boolean): Promise<UpstreamResponse> {
    const d = call.deployment;
    const body = toAnthropicRequest(cappedRequest(call), d.model, call.maxTokens, stream);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: stream ? 'text/event-stream' : 'application/json',
      'anthropic-version': d.anthropic?.version ?? '2023-06-01',
    };
    if (d.apiKey) headers['x-api-key'] = d.apiKey;
    const res = await this.http.post(d, '/v1/messages', headers, JSON.stringify(body), call.signal, {
      stream,
      timeouts: call.timeouts,
    });
    if (res.statusCode < 200 || res.statusCode >= 300) throw await statusError(res, d, parseAnthropicError);
    call.onAccepted?.();
    return res;
  }
}
