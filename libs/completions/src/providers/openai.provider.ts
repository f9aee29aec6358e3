import type { ChatCompletion, ChatCompletionChunk } from '../chat/openai-types';
import { cappedRequest, Provider, StreamItem, UpstreamCall, UpstreamError } from './provider';
import {
  ParsedUpstreamError,
  readText,
  sseEvents,
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
    const body = { ...cappedRequest(call), model: call.deployment.model, stream: false };
    delete body.stream_options;
    const res = await this.send(call, body, false);
    try {
      const json = JSON.parse(await readText(res.body, MAX_ANSWER_BYTES)) as ChatCompletion;
      if (!Array.isArray(json?.choices)) throw new Error('no choices');
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

  private async *chunks(
    res: UpstreamResponse,
    call: UpstreamCall,
    startedAt: number,
  ): AsyncGenerator<StreamItem> {
    let finished = false;
    try {
      for await (const event of sseEvents(res.body, streamTiming(call, startedAt))) {
        if (event.data === '[DONE]') return;
        if (event.event === 'error') throw this.midStreamError(event.data, call);
        let chunk: ChatCompletionChunk;
        try {
          chunk = JSON.parse(event.data) as ChatCompletionChunk;
        } catch {
          throw UpstreamError.badGateway(
            `The openai upstream of ${call.deployment.id} sent a malformed chunk`,
            false,
          );
        }
        if ((chunk as { error?: unknown }).error) throw this.midStreamError(event.data, call);
        if (chunk.choices?.some((c) => c.finish_reason)) finished = true;
        yield { chunk, raw: event.data };
      }
      // Some servers omit [DONE]; a stream that ended without a finish_reason was cut short.
      if (!finished)
        throw UpstreamError.badGateway(
          `The openai upstream of ${call.deployment.id} ended the stream early`,
          false,
        );
    } catch (e) {
      throw transportError(e, call.signal, call.deployment);
    } finally {
      if (!res.body.destroyed) res.body.destroy();
    }
  }

  private midStreamError(data: string, call: UpstreamCall): UpstreamError {
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

  private async send(call: UpstreamCall, body: object, stream: boolean): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
    };
    if (call.deployment.apiKey) headers.authorization = `Bearer ${call.deployment.apiKey}`;
    const res = await this.http.post(
      call.deployment,
      '/chat/completions',
      headers,
      JSON.stringify(body),
      call.signal,
      { stream, timeouts: call.timeouts },
    );
    if (res.statusCode < 200 || res.statusCode >= 300)
      throw await statusError(res, call.deployment, parseOpenAiError);
    call.onAccepted?.();
    return res;
  }
}
