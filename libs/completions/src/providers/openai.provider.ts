import type { ChatCompletion, ChatCompletionChunk, ChatRequest } from '../chat/openai-types';
import type { EmbeddingsRequest, EmbeddingsResponse } from '../embeddings/embeddings-types';
import {
  ResponseEvent,
  ResponseObject,
  ResponsesRequest,
  TERMINAL_EVENTS,
} from '../responses/responses-types';
import {
  cappedRequest,
  EndpointCall,
  Provider,
  RelayedAnswer,
  ResponseOp,
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

export function parseOpenAiError(json: unknown): ParsedUpstreamError | undefined {
  const e = (json as { error?: unknown })?.error;
  if (typeof e === 'string') return { message: e };
  if (typeof e !== 'object' || e === null) return undefined;
  const { message, type, code, param } = e as Record<string, unknown>;
  return {
    message: typeof message === 'string' ? message : undefined,
    type: typeof type === 'string' ? type : undefined,
    code: typeof code === 'string' ? code : typeof code === 'number' ? String(code) : undefined,
    param: typeof param === 'string' ? param : undefined,
  };
}

/**
 * Any OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio, ...) at the deployment's
 * base URL. The client's body goes through as sent (unknown fields included) with the
 * upstream model name and the grant as its cap; streams ask for usage and are relayed
 * chunk by chunk.
 */
export class OpenAiProvider extends Provider {
  constructor(private readonly http: UpstreamHttp) {
    super();
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    // cappedRequest's copy, not copied again (the same keys in the same order as a spread)
    const body: ChatRequest = cappedRequest(call);
    body.model = call.deployment.model;
    body.stream = false;
    if (body.stream_options !== undefined) delete body.stream_options;
    const res = await this.send(call, body, false);
    return this.readJson(res, call, (j: ChatCompletion) => Array.isArray(j?.choices));
  }

  /** POST {base}/embeddings with the client's body (unknown fields included) and the upstream model. */
  override async embed(call: EndpointCall<EmbeddingsRequest>): Promise<EmbeddingsResponse> {
    const body = { ...call.request, model: call.deployment.model };
    const res = await this.send(call, body, false, '/embeddings');
    return this.readJson(res, call, (j: EmbeddingsResponse) => Array.isArray(j?.data));
  }

  /** POST {base}/responses with the client's body and the upstream model (the caller sets max_output_tokens). */
  override async respond(call: EndpointCall<ResponsesRequest>): Promise<ResponseObject> {
    const body = { ...call.request, model: call.deployment.model, stream: false };
    const res = await this.send(call, body, false, '/responses');
    return this.readJson(
      res,
      call,
      (j: ResponseObject) => typeof j?.id === 'string' && Array.isArray(j.output),
    );
  }

  override async respondStream(call: EndpointCall<ResponsesRequest>): Promise<AsyncIterable<ResponseEvent>> {
    const body = { ...call.request, model: call.deployment.model, stream: true };
    const startedAt = Date.now();
    const res = await this.send(call, body, true, '/responses');
    return this.responseEvents(res, call, startedAt);
  }

  /** GET / DELETE / POST .../cancel on {base}/responses/{id}: status and body relayed (401/403 hidden). */
  override async responseOp(
    call: Omit<EndpointCall<unknown>, 'request'>,
    op: ResponseOp,
  ): Promise<RelayedAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (call.deployment.apiKey) headers.authorization = `Bearer ${call.deployment.apiKey}`;
    const res = await this.http.request(
      call.deployment,
      op.method,
      `/responses/${encodeURIComponent(op.id)}${op.suffix}`,
      headers,
      undefined,
      call.signal,
      { stream: false, timeouts: call.timeouts },
      op.query,
    );
    if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode >= 500)
      throw await statusError(res, call.deployment, parseOpenAiError);
    try {
      return { status: res.statusCode, body: await readText(res.body, MAX_ANSWER_BYTES) };
    } catch (e) {
      throw transportError(e, call.signal, call.deployment);
    }
  }

  /** The Responses API's events as they come (SseStream), up to a terminal one. */
  private responseEvents(
    res: UpstreamResponse,
    call: EndpointCall<unknown>,
    startedAt: number,
  ): AsyncIterable<ResponseEvent> {
    const d = call.deployment;
    return new SseStream<ResponseEvent>(
      res.body,
      {
        event: (event, push) => {
          if (event.data === '[DONE]') throw this.endedEarly(d.id);
          const data = eventJson<Record<string, unknown>>(event.data, `The openai upstream of ${d.id}`);
          const type = typeof data.type === 'string' ? data.type : (event.event ?? 'message');
          if (type === 'error') throw this.midStreamError(event.data, call);
          push({ type, data, raw: event.data });
          return TERMINAL_EVENTS.has(type);
        },
        end: () => {
          throw this.endedEarly(d.id);
        },
        error: (e) => transportError(e, call.signal, d),
      },
      streamTiming(call, startedAt),
    );
  }

  private endedEarly(id: string): UpstreamError {
    return UpstreamError.badGateway(`The openai upstream of ${id} ended the stream early`, false);
  }

  /** A 2xx JSON answer, checked by `valid`; anything else is a 502. */
  async readJson<T>(
    res: UpstreamResponse,
    call: { deployment: UpstreamCall['deployment']; signal: AbortSignal },
    valid: (json: T) => boolean,
  ): Promise<T> {
    try {
      const json = JSON.parse(await readText(res.body, MAX_ANSWER_BYTES)) as T;
      if (!valid(json)) throw new Error('unexpected shape');
      return json;
    } catch (e) {
      throw e instanceof UpstreamError || call.signal.aborted
        ? transportError(e, call.signal, call.deployment)
        : UpstreamError.badGateway(
            `The openai upstream of ${call.deployment.id} sent an unreadable answer`,
            false,
          );
    }
  }

  async stream(call: UpstreamCall): Promise<AsyncIterable<StreamItem>> {
    const body = {
      ...cappedRequest(call),
      model: call.deployment.model,
      stream: true,
      // Always ask for usage: the charge needs it; clients that did not ask never see it.
      stream_options: { ...call.request.stream_options, include_usage: true },
    };
    const startedAt = Date.now();
    const res = await this.send(call, body, true);
    return this.chunks(res, call, startedAt);
  }

  /** The upstream's chunks as they come; each keeps its own JSON (`raw`), relayed as is when nothing changes. */
  private chunks(res: UpstreamResponse, call: UpstreamCall, startedAt: number): AsyncIterable<StreamItem> {
    const d = call.deployment;
    let finished = false;
    return new SseStream<StreamItem>(
      res.body,
      {
        event: (event, push, bytes) => {
          if (event.data === '[DONE]') return true;
          if (event.event === 'error') throw this.midStreamError(event.data, call);
          const chunk = eventJson<ChatCompletionChunk>(event.data, `The openai upstream of ${d.id}`, 'chunk');
          if ((chunk as { error?: unknown }).error) throw this.midStreamError(event.data, call);
          if (!finished && chunk.choices?.some((c) => c.finish_reason)) finished = true;
          push({ chunk, raw: event.data, bytes });
        },
        end: () => {
          // Some servers omit [DONE]; a stream that ended without a finish_reason was cut short.
          if (!finished) throw this.endedEarly(d.id);
        },
        error: (e) => transportError(e, call.signal, d),
      },
      streamTiming(call, startedAt),
    );
  }

  private midStreamError(data: string, call: { deployment: UpstreamCall['deployment'] }): UpstreamError {
    let message: string | undefined;
    try {
      message = parseOpenAiError(JSON.parse(data))?.message;
    } catch {
      message = undefined;
    }
    return UpstreamError.badGateway(
      `The openai upstream of ${call.deployment.id} failed mid-stream${message ? `: ${message}` : ''}`,
      false,
    );
  }

  private async send(
    call: Pick<EndpointCall<unknown>, 'deployment' | 'signal' | 'timeouts' | 'onAccepted'>,
    body: object,
    stream: boolean,
    path = '/chat/completions',
  ): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
    };
    if (call.deployment.apiKey) headers.authorization = `Bearer ${call.deployment.apiKey}`;
    const res = await this.http.post(call.deployment, path, headers, JSON.stringify(body), call.signal, {
      stream,
      timeouts: call.timeouts,
    });
    if (res.statusCode < 200 || res.statusCode >= 300)
      throw await statusError(res, call.deployment, parseOpenAiError);
    call.onAccepted?.();
    return res;
  }
}
