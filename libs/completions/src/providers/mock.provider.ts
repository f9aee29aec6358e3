import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  ChatRequest,
  Usage,
} from '../chat/openai-types';
import { Embedding, EmbeddingsRequest, EmbeddingsResponse, inputsOf } from '../embeddings/embeddings-types';
import type { Deployment, MockOptions } from '../routing/routing-table';
import { countPromptTokens, countTokens, encodeTokens, decodeTokens, TokenCounter } from '../tokens';
import {
  countResponsePromptTokens,
  lastInputText,
  ResponseEvent,
  ResponseObject,
  ResponsesRequest,
} from '../responses/responses-types';
import { ApiError } from '@app/observability';
import {
  cappedRequest,
  EndpointCall,
  Provider,
  RelayedAnswer,
  ResponseOp,
  StreamItem,
  UpstreamCall,
} from './provider';

const NO_OPTIONS: MockOptions = { latencyMs: 0, chunkDelayMs: 0 };

function lastUserText(messages: ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content))
      return m.content
        .filter((p) => p.type === 'text')
        .map((p) => (p as { text: string }).text)
        .join(' ');
  }
  return '';
}

/** The mock's answer: fixed (`options.reply`) or derived from the last user message; cut at max_tokens. */
export function mockAnswer(
  req: ChatRequest,
  d: Deployment,
): { text: string; finish: 'stop' | 'length'; usage: Usage } {
  const o = d.mock ?? NO_OPTIONS;
  const said = lastUserText(req.messages).replace(/\s+/g, ' ').trim();
  let text =
    o.reply ??
    `This is a mock answer from ${d.model}. You said: "${said.length > 200 ? `${said.slice(0, 200)}...` : said}"`;
  let finish: 'stop' | 'length' = 'stop';
  const max = req.max_completion_tokens ?? req.max_tokens;
  if (max != null) {
    const tokens = encodeTokens(text);
    if (tokens.length > max) {
      text = decodeTokens(tokens.slice(0, max));
      finish = 'length';
    }
  }
  const prompt = o.promptTokens ?? countPromptTokens(req);
  const completion = o.completionTokens ?? countTokens(text);
  return {
    text,
    finish,
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

/** The mock's embedding size when the request sets no `dimensions` (text-embedding-3-small's). */
export const MOCK_DIMENSIONS = 1536;

/**
 * A deterministic unit vector for a text: sha256 of (model, text, block number) in blocks,
 * bytes mapped to [-1, 1], normalised. Same input, same vector; different inputs, unrelated ones.
 */
export function mockVector(model: string, text: string, dimensions: number): number[] {
  const v: number[] = [];
  for (let block = 0; v.length < dimensions; block++) {
    const h = createHash('sha256').update(`${model}\0${block}\0`).update(text).digest();
    for (let i = 0; i + 1 < h.length && v.length < dimensions; i += 2) v.push(h.readInt16LE(i) / 32768);
  }
  const norm = Math.sqrt(v.reduce((n, x) => n + x * x, 0)) || 1;
  return v.map((x) => Math.fround(x / norm));
}

/** Mock responses kept for GET / DELETE (store: true), oldest dropped first. */
const MOCK_STORE_MAX = 1000;

/**
 * Built in, no network: a deterministic answer derived from the prompt, streamed word by
 * word, with the latency and token counts of the deployment's options. The offline default.
 */
export class MockProvider extends Provider {
  private readonly stored = new Map<string, ResponseObject>();

  /** The mock's response to a Responses API request, and its message's text (what a stream sends). */
  private mockResponse(req: ResponsesRequest, d: Deployment): { response: ResponseObject; text: string } {
    const chat: ChatRequest = {
      model: req.model,
      messages: [{ role: 'user', content: lastInputText(req) }],
      ...(req.max_output_tokens != null ? { max_tokens: req.max_output_tokens } : {}),
    };
    const { text, finish } = mockAnswer(chat, d);
    const input = d.mock?.promptTokens ?? countResponsePromptTokens(req);
    const output = d.mock?.completionTokens ?? countTokens(text);
    const id = `resp_mock${randomBytes(12).toString('hex')}`;
    const response: ResponseObject = {
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status: finish === 'length' ? 'incomplete' : 'completed',
      error: null,
      incomplete_details: finish === 'length' ? { reason: 'max_output_tokens' } : null,
      instructions: req.instructions ?? null,
      max_output_tokens: req.max_output_tokens ?? null,
      model: d.model,
      output: [
        {
          type: 'message',
          id: `msg_mock${randomBytes(12).toString('hex')}`,
          status: finish === 'length' ? 'incomplete' : 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
        },
      ],
      parallel_tool_calls: true,
      previous_response_id: req.previous_response_id ?? null,
      store: req.store !== false,
      temperature: 1,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      tools: [],
      top_p: 1,
      truncation: 'disabled',
      usage: {
        input_tokens: input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: input + output,
      },
      metadata: {},
    };
    return { response, text };
  }

  private keep(r: ResponseObject): void {
    if (r.store === false) return;
    this.stored.set(r.id, r);
    if (this.stored.size > MOCK_STORE_MAX) this.stored.delete(this.stored.keys().next().value!);
  }

  override async respond(call: EndpointCall<ResponsesRequest>): Promise<ResponseObject> {
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    const { response } = this.mockResponse(call.request, call.deployment);
    this.keep(response);
    return response;
  }

  override async respondStream(call: EndpointCall<ResponsesRequest>): Promise<AsyncIterable<ResponseEvent>> {
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    return this.responseEvents(call);
  }

  /** OpenAI's event sequence for one text message. */
  private async *responseEvents(call: EndpointCall<ResponsesRequest>): AsyncGenerator<ResponseEvent> {
    const { response, text } = this.mockResponse(call.request, call.deployment);
    const message = (response.output as Record<string, unknown>[])[0];
    const itemId = message.id as string;
    let seq = 0;
    const ev = (type: string, fields: Record<string, unknown>): ResponseEvent => {
      const data = { type, sequence_number: seq++, ...fields };
      return { type, data, raw: JSON.stringify(data) };
    };
    const pending = { ...response, status: 'in_progress', output: [], usage: null, incomplete_details: null };
    const part = { type: 'output_text', annotations: [], logprobs: [] };
    const at = { item_id: itemId, output_index: 0, content_index: 0 };
    yield ev('response.created', { response: pending });
    yield ev('response.in_progress', { response: pending });
    yield ev('response.output_item.added', {
      output_index: 0,
      item: { ...message, status: 'in_progress', content: [] },
    });
    yield ev('response.content_part.added', { ...at, part: { ...part, text: '' } });
    for (const word of text.match(/\s*\S+\s*/g) ?? []) {
      await this.wait(call.deployment.mock?.chunkDelayMs ?? 0, call.signal);
      yield ev('response.output_text.delta', { ...at, delta: word, logprobs: [] });
    }
    yield ev('response.output_text.done', { ...at, text, logprobs: [] });
    yield ev('response.content_part.done', { ...at, part: { ...part, text } });
    yield ev('response.output_item.done', { output_index: 0, item: message });
    this.keep(response);
    yield ev(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
  }

  /** The mock keeps what it answered (bounded): GET and DELETE work; nothing runs in the background to cancel. */
  override responseOp(_call: Omit<EndpointCall<unknown>, 'request'>, op: ResponseOp): Promise<RelayedAnswer> {
    const found = this.stored.get(op.id);
    const answer = (status: number, body: unknown) => Promise.resolve({ status, body: JSON.stringify(body) });
    if (!found)
      return answer(
        404,
        new ApiError(
          404,
          `No response found with id '${op.id}'.`,
          'invalid_request_error',
          'not_found',
        ).toBody(),
      );
    if (op.suffix === '/cancel')
      return answer(
        400,
        new ApiError(
          400,
          'Only responses created with background: true can be cancelled.',
          'invalid_request_error',
          'invalid_request',
        ).toBody(),
      );
    if (op.method === 'DELETE') {
      this.stored.delete(op.id);
      return answer(200, { id: op.id, object: 'response.deleted', deleted: true });
    }
    return answer(200, found);
  }
  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    const { text, finish, usage } = mockAnswer(cappedRequest(call), call.deployment);
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    const n = call.request.n ?? 1;
    return {
      id: `chatcmpl-mock-${randomBytes(8).toString('hex')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: call.deployment.model,
      choices: Array.from({ length: n }, (_, index) => ({
        index,
        message: { role: 'assistant' as const, content: text },
        finish_reason: finish,
        logprobs: null,
      })),
      usage:
        n === 1
          ? usage
          : {
              ...usage,
              completion_tokens: usage.completion_tokens * n,
              total_tokens: usage.prompt_tokens + usage.completion_tokens * n,
            },
    };
  }

  async stream(call: UpstreamCall): Promise<AsyncIterable<StreamItem>> {
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    return this.chunks(call);
  }

  private async *chunks(call: UpstreamCall): AsyncGenerator<StreamItem> {
    const { text, finish, usage } = mockAnswer(cappedRequest(call), call.deployment);
    const n = call.request.n ?? 1;
    const base = {
      id: `chatcmpl-mock-${randomBytes(8).toString('hex')}`,
      object: 'chat.completion.chunk' as const,
      created: Math.floor(Date.now() / 1000),
      model: call.deployment.model,
    };
    const chunk = (
      delta: ChatCompletionChunk['choices'][number]['delta'],
      finish_reason: 'stop' | 'length' | null = null,
    ) => ({
      chunk: {
        ...base,
        choices: Array.from({ length: n }, (_, index) => ({ index, delta, finish_reason, logprobs: null })),
      },
    });
    yield chunk({ role: 'assistant', content: '' });
    for (const word of text.match(/\s*\S+\s*/g) ?? []) {
      await this.wait(call.deployment.mock?.chunkDelayMs ?? 0, call.signal);
      yield chunk({ content: word });
    }
    yield chunk({}, finish);
    yield {
      chunk: {
        ...base,
        choices: [],
        usage: {
          ...usage,
          completion_tokens: usage.completion_tokens * n,
          total_tokens: usage.prompt_tokens + usage.completion_tokens * n,
        },
      },
    };
  }

  override async embed(call: EndpointCall<EmbeddingsRequest>): Promise<EmbeddingsResponse> {
    const { request: req, deployment: d } = call;
    await this.wait(d.mock?.latencyMs ?? 0, call.signal);
    const dims = req.dimensions ?? MOCK_DIMENSIONS;
    const counter = new TokenCounter();
    let tokens = 0;
    const data: Embedding[] = inputsOf(req).map((input, index) => {
      const text = typeof input === 'string' ? input : input.join(' ');
      tokens += typeof input === 'string' ? counter.count(input) : input.length;
      const v = mockVector(d.model, text, dims);
      const embedding =
        req.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
      return { object: 'embedding', index, embedding };
    });
    const prompt = d.mock?.promptTokens ?? tokens;
    return { object: 'list', data, model: d.model, usage: { prompt_tokens: prompt, total_tokens: prompt } };
  }

  private async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    if (ms <= 0) return;
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      throw signal.reason;
    }
  }
}
