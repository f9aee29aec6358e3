import { ApiError } from '@app/observability';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  ChatRequest,
  ContentPart,
  FinishReason,
  ToolCall,
  Usage,
} from '../chat/openai-types';

/**
 * OpenAI chat <-> Anthropic Messages, both ways, streaming included. Pure functions;
 * the mapping table is in docs/models.md.
 */

/** One content block of the Messages API (text, image, tool_use, tool_result, thinking, ...). */
export type Block = Record<string, unknown> & { type: string };
export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: Block[];
}

export interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}

export interface AnthropicResponse {
  id: string;
  model: string;
  content: Block[];
  stop_reason: string | null;
  usage: AnthropicUsage;
}

const unsupported = (what: string, param: string) =>
  ApiError.badRequest(`${what} is not supported by anthropic models`, 'unsupported_parameter', param);

const STOP_REASONS: Record<string, FinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

export function finishReason(stopReason: string | null | undefined): FinishReason | null {
  if (!stopReason) return null;
  return STOP_REASONS[stopReason] ?? 'stop';
}

function textOf(content: ChatMessage['content'], param: string): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((p, i) => {
      if (p.type === 'text') return p.text as string;
      if (p.type === 'refusal') return p.refusal as string;
      throw unsupported(`Content part "${p.type}" here`, `${param}[${i}]`);
    })
    .join('');
}

function imageBlock(url: string, param: string): Block {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (m) return { type: 'image', source: { type: 'base64', media_type: m[1], data: m[2] } };
  if (/^https?:\/\//.test(url)) return { type: 'image', source: { type: 'url', url } };
  throw ApiError.badRequest(
    'image_url.url must be an http(s) URL or a base64 data URL',
    'invalid_request',
    param,
  );
}

function userBlocks(content: ChatMessage['content'], param: string): Block[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return (content as ContentPart[]).map((p, i) => {
    if (p.type === 'text') return { type: 'text', text: p.text as string };
    if (p.type === 'image_url')
      return imageBlock((p as { image_url: { url: string } }).image_url.url, `${param}[${i}]`);
    throw unsupported(`Content part "${p.type}"`, `${param}[${i}]`);
  });
}

function parseArguments(args: string, param: string): unknown {
  try {
    return args.trim() ? JSON.parse(args) : {};
  } catch {
    throw ApiError.badRequest(`${param} must be a JSON object`, 'invalid_request', param);
  }
}

/** The Messages API body for an OpenAI chat request. */
export function toAnthropicRequest(
  req: ChatRequest,
  model: string,
  defaultMaxTokens: number,
  stream: boolean,
): Record<string, unknown> {
  if (req.n != null && req.n > 1) throw unsupported('n > 1', 'n');
  const rf = (req.response_format as { type?: string } | undefined)?.type;
  if (rf && rf !== 'text') throw unsupported(`response_format "${rf}"`, 'response_format');

  const system: string[] = [];
  const messages: AnthropicMessage[] = [];
  const push = (role: AnthropicMessage['role'], blocks: Block[]) => {
    const last = messages[messages.length - 1];
    // The Messages API wants alternating turns: consecutive turns of one role merge.
    if (last?.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  };

  req.messages.forEach((m, i) => {
    const param = `messages[${i}]`;
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(textOf(m.content, `${param}.content`));
        break;
      case 'user':
        push('user', userBlocks(m.content, `${param}.content`));
        break;
      case 'assistant': {
        const blocks: Block[] = [];
        const text = textOf(m.content, `${param}.content`);
        if (text) blocks.push({ type: 'text', text });
        (m.tool_calls ?? []).forEach((c: ToolCall, j) =>
          blocks.push({
            type: 'tool_use',
            id: c.id,
            name: c.function.name,
            input: parseArguments(c.function.arguments, `${param}.tool_calls[${j}].function.arguments`),
          }),
        );
        if (blocks.length) push('assistant', blocks);
        break;
      }
      case 'tool':
        push('user', [
          {
            type: 'tool_result',
            tool_use_id: m.tool_call_id,
            content: textOf(m.content, `${param}.content`),
          },
        ]);
        break;
      default:
        throw unsupported(`Role "${m.role}"`, `${param}.role`);
    }
  });

  const body: Record<string, unknown> = {
    model,
    messages,
    max_tokens: req.max_completion_tokens ?? req.max_tokens ?? defaultMaxTokens,
  };
  if (system.length) body.system = system.join('\n\n');
  // OpenAI's range is 0-2, Anthropic's 0-1.
  if (req.temperature != null) body.temperature = Math.min(req.temperature, 1);
  if (req.top_p != null) body.top_p = req.top_p;
  if (req.stop != null) body.stop_sequences = Array.isArray(req.stop) ? req.stop : [req.stop];
  if (req.user) body.metadata = { user_id: req.user };
  if (req.tools?.length) {
    body.tools = req.tools.map((t, i) => {
      if (t.type !== 'function') throw unsupported(`Tool type "${t.type}"`, `tools[${i}].type`);
      return {
        name: t.function.name,
        ...(t.function.description ? { description: t.function.description } : {}),
        input_schema: t.function.parameters ?? { type: 'object', properties: {} },
      };
    });
  }
  let choice: Record<string, unknown> | undefined;
  const tc = req.tool_choice;
  if (tc === 'auto') choice = { type: 'auto' };
  else if (tc === 'required') choice = { type: 'any' };
  else if (tc === 'none') choice = { type: 'none' };
  else if (tc && typeof tc === 'object') choice = { type: 'tool', name: tc.function.name };
  if (req.parallel_tool_calls === false && req.tools?.length)
    choice = { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true };
  if (choice) body.tool_choice = choice;
  if (stream) body.stream = true;
  return body;
}

export function toOpenAiUsage(u: AnthropicUsage): Usage {
  const prompt =
    (u.input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0);
  const completion = u.output_tokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A Messages API answer as an OpenAI chat completion. */
export function fromAnthropicResponse(
  msg: AnthropicResponse,
  created = Math.floor(Date.now() / 1000),
): ChatCompletion {
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const b of msg.content ?? []) {
    if (b.type === 'text') text += b.text as string;
    else if (b.type === 'tool_use')
      toolCalls.push({
        id: b.id as string,
        type: 'function',
        function: { name: b.name as string, arguments: JSON.stringify(b.input ?? {}) },
      });
  }
  return {
    id: msg.id,
    object: 'chat.completion',
    created,
    model: msg.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (toolCalls.length ? null : ''),
          ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
        },
        finish_reason: finishReason(msg.stop_reason),
        logprobs: null,
      },
    ],
    usage: toOpenAiUsage(msg.usage ?? {}),
  };
}

/** What one Anthropic stream event becomes. */
export interface TranslatedEvent {
  chunks: ChatCompletionChunk[];
  /** Prompt tokens, known from message_start on. */
  promptTokens?: number;
  /** message_stop: the stream is complete. */
  done?: boolean;
  /** An `error` event: its message. */
  error?: string;
}

/** Anthropic stream events -> OpenAI chunks, one event at a time. */
export class AnthropicStreamTranslator {
  private id = '';
  private model = '';
  private readonly created = Math.floor(Date.now() / 1000);
  private usage: AnthropicUsage = {};
  private finish: FinishReason | null = null;
  /** Anthropic content block index -> OpenAI tool_calls index. */
  private readonly toolIndex = new Map<number, number>();

  constructor(fallbackModel: string) {
    this.model = fallbackModel;
  }

  push(type: string, data: Record<string, any>): TranslatedEvent {
    switch (type) {
      case 'message_start': {
        const m = data.message ?? {};
        this.id = m.id ?? this.id;
        this.model = m.model ?? this.model;
        this.usage = { ...m.usage };
        return {
          chunks: [this.chunk({ role: 'assistant', content: '' })],
          promptTokens: toOpenAiUsage(this.usage).prompt_tokens,
        };
      }
      case 'content_block_start': {
        const b = data.content_block ?? {};
        if (b.type === 'text' && b.text) return { chunks: [this.chunk({ content: b.text })] };
        if (b.type === 'tool_use') {
          const index = this.toolIndex.size;
          this.toolIndex.set(data.index, index);
          return {
            chunks: [
              this.chunk({
                tool_calls: [
                  { index, id: b.id, type: 'function', function: { name: b.name, arguments: '' } },
                ],
              }),
            ],
          };
        }
        return { chunks: [] };
      }
      case 'content_block_delta': {
        const d = data.delta ?? {};
        if (d.type === 'text_delta') return { chunks: [this.chunk({ content: d.text })] };
        if (d.type === 'input_json_delta' && this.toolIndex.has(data.index))
          return {
            chunks: [
              this.chunk({
                tool_calls: [
                  { index: this.toolIndex.get(data.index)!, function: { arguments: d.partial_json } },
                ],
              }),
            ],
          };
        return { chunks: [] };
      }
      case 'message_delta': {
        this.usage = {
          ...this.usage,
          ...Object.fromEntries(Object.entries(data.usage ?? {}).filter(([, v]) => v != null)),
        };
        this.finish = finishReason(data.delta?.stop_reason);
        return { chunks: [this.chunk({}, this.finish)] };
      }
      case 'message_stop':
        return {
          chunks: [{ ...this.chunk({}), choices: [], usage: toOpenAiUsage(this.usage) }],
          done: true,
        };
      case 'error':
        return { chunks: [], error: data.error?.message ?? 'error event' };
      default:
        // ping, content_block_stop, thinking deltas: nothing to say
        return { chunks: [] };
    }
  }

  private chunk(
    delta: ChatCompletionChunk['choices'][number]['delta'],
    finish: FinishReason | null = null,
  ): ChatCompletionChunk {
    return {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    };
  }
}
