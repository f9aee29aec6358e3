import { ApiError } from '@app/observability';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  ChatRequest,
  ContentPart,
  FinishReason,
  FunctionTool,
  ToolCall,
  ToolChoice,
  Usage,
} from '../chat/openai-types';
import type { AnthropicResponse, AnthropicUsage, Block } from '../providers/anthropic-translate';
import { cachedTokensOf } from '../usage';
import { blocksOf, MessagesRequest, systemText, unsupportedBlock } from './messages-request';

/**
 * Anthropic Messages -> OpenAI chat (an `openai` deployment serving POST /v1/messages) and
 * the answer back. The other direction is ../providers/anthropic-translate.ts; the types
 * are shared. Mapping table: docs/models.md.
 */

/** A Messages API answer (what POST /v1/messages returns). */
export interface MessagesResponse extends AnthropicResponse {
  type: 'message';
  role: 'assistant';
  stop_sequence: string | null;
  usage: AnthropicUsage & { input_tokens: number; output_tokens: number };
}

/** One server-sent event of a Messages stream. */
export interface MessagesEvent {
  event: string;
  data: Record<string, any>;
  /** The upstream's own JSON, forwarded byte for byte. */
  raw?: string;
}

function textOf(content: unknown, param: string): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return (content as Block[])
    .map((b, i) => {
      if (b.type === 'text') return b.text as string;
      throw unsupportedBlock(b.type, `${param}[${i}]`);
    })
    .join('');
}

function imagePart(b: Block, param: string): ContentPart {
  const src = (b.source ?? {}) as Record<string, string>;
  if (src.type === 'base64')
    return { type: 'image_url', image_url: { url: `data:${src.media_type};base64,${src.data}` } };
  if (src.type === 'url') return { type: 'image_url', image_url: { url: src.url } };
  throw ApiError.badRequest(
    `${param}.source.type must be "base64" or "url"`,
    'invalid_request',
    `${param}.source`,
  );
}

/** The OpenAI chat request for a Messages request, for an upstream that speaks only chat. */
export function messagesToChat(req: MessagesRequest, model: string, maxTokens: number): ChatRequest {
  const messages: ChatMessage[] = [];
  const system = systemText(req.system);
  if (system) messages.push({ role: 'system', content: system });
  req.messages.forEach((m, i) => {
    const param = `messages[${i}].content`;
    const blocks = blocksOf(m.content);
    if (m.role === 'assistant') {
      let text = '';
      const calls: ToolCall[] = [];
      blocks.forEach((b, j) => {
        if (b.type === 'text') text += b.text as string;
        else if (b.type === 'tool_use')
          calls.push({
            id: b.id as string,
            type: 'function',
            function: { name: b.name as string, arguments: JSON.stringify(b.input ?? {}) },
          });
        // Thinking is the model's own and means nothing to another provider.
        else if (b.type !== 'thinking' && b.type !== 'redacted_thinking')
          throw unsupportedBlock(b.type, `${param}[${j}]`);
      });
      messages.push({
        role: 'assistant',
        content: text || null,
        ...(calls.length ? { tool_calls: calls } : {}),
      });
      return;
    }
    const parts: ContentPart[] = [];
    blocks.forEach((b, j) => {
      if (b.type === 'text') parts.push({ type: 'text', text: b.text as string });
      else if (b.type === 'image') parts.push(imagePart(b, `${param}[${j}]`));
      // Tool results answer the assistant's calls: OpenAI wants them as tool messages right after it.
      else if (b.type === 'tool_result')
        messages.push({
          role: 'tool',
          tool_call_id: b.tool_use_id as string,
          content: (b.is_error ? 'Error: ' : '') + textOf(b.content, `${param}[${j}].content`),
        });
      else throw unsupportedBlock(b.type, `${param}[${j}]`);
    });
    if (parts.length)
      messages.push({
        role: 'user',
        content: parts.every((p) => p.type === 'text')
          ? parts.map((p) => (p as { text: string }).text).join('')
          : parts,
      });
  });
  const chat: ChatRequest = { model, messages, max_tokens: maxTokens };
  if (req.temperature != null) chat.temperature = req.temperature;
  if (req.top_p != null) chat.top_p = req.top_p;
  if (req.stop_sequences?.length) chat.stop = req.stop_sequences;
  if (req.metadata?.user_id) chat.user = req.metadata.user_id;
  if (req.tools?.length)
    chat.tools = req.tools.map((t): FunctionTool => ({
      type: 'function',
      function: {
        name: t.name,
        ...(t.description ? { description: t.description } : {}),
        parameters: t.input_schema ?? { type: 'object', properties: {} },
      },
    }));
  const tc = req.tool_choice;
  if (tc) {
    const choice: ToolChoice =
      tc.type === 'any'
        ? 'required'
        : tc.type === 'none'
          ? 'none'
          : tc.type === 'tool'
            ? { type: 'function', function: { name: tc.name ?? '' } }
            : 'auto';
    if (req.tools?.length) chat.tool_choice = choice;
    if (tc.disable_parallel_tool_use && req.tools?.length) chat.parallel_tool_calls = false;
  }
  return chat;
}

const STOP_REASONS: Record<FinishReason, string> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

export function stopReason(finish: FinishReason | null | undefined): string | null {
  return finish ? (STOP_REASONS[finish] ?? 'end_turn') : null;
}

/** OpenAI usage in Anthropic's fields: cached prompt tokens are cache reads, not input. */
export function anthropicUsage(u: Usage | null | undefined): MessagesResponse['usage'] {
  const prompt = u?.prompt_tokens ?? 0;
  const cached = cachedTokensOf(u);
  return {
    input_tokens: prompt - cached,
    output_tokens: u?.completion_tokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
  };
}

const messageId = (id: string) => (id.startsWith('msg_') ? id : `msg_${id}`);

function toolInput(args: string): unknown {
  try {
    return args.trim() ? JSON.parse(args) : {};
  } catch {
    return {};
  }
}

/** An OpenAI chat completion as a Messages API answer. */
export function chatToMessage(c: ChatCompletion, model: string): MessagesResponse {
  const choice = c.choices[0];
  const content: Block[] = [];
  const text = choice?.message.content;
  if (typeof text === 'string' && text) content.push({ type: 'text', text });
  for (const call of choice?.message.tool_calls ?? [])
    content.push({
      type: 'tool_use',
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  return {
    id: messageId(c.id),
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: stopReason(choice?.finish_reason),
    stop_sequence: null,
    usage: anthropicUsage(c.usage),
  };
}

/**
 * OpenAI chunks -> the Messages event sequence: message_start, ping, then per content
 * block content_block_start / _delta / _stop, message_delta (stop reason, usage),
 * message_stop. `finish()` closes whatever is open once the chunks end.
 */
export class ChunksToEvents {
  private started = false;
  private block: { index: number; kind: 'text' | 'tool'; toolIndex?: number } | null = null;
  private next = 0;
  private stop: string | null = null;
  private usage: Usage | null = null;

  constructor(
    private readonly model: string,
    private readonly promptTokens: number,
  ) {}

  push(chunk: ChatCompletionChunk): MessagesEvent[] {
    const out: MessagesEvent[] = [];
    if (!this.started) out.push(...this.start(chunk.id));
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.find((ch) => ch.index === 0);
    if (!choice) return out;
    const d = choice.delta ?? {};
    if (typeof d.content === 'string' && d.content) {
      if (this.block?.kind !== 'text') out.push(...this.open('text', { type: 'text', text: '' }));
      out.push(this.delta({ type: 'text_delta', text: d.content }));
    }
    for (const t of d.tool_calls ?? []) {
      if (t.id || this.block?.kind !== 'tool' || this.block.toolIndex !== t.index) {
        out.push(
          ...this.open('tool', {
            type: 'tool_use',
            id: t.id ?? `toolu_${t.index}`,
            name: t.function?.name ?? '',
            input: {},
          }),
        );
        this.block!.toolIndex = t.index;
      }
      if (t.function?.arguments)
        out.push(this.delta({ type: 'input_json_delta', partial_json: t.function.arguments }));
    }
    if (choice.finish_reason) this.stop = stopReason(choice.finish_reason);
    return out;
  }

  /** The closing events; `usage` is what was measured when the upstream sent none. */
  finish(fallback: { promptTokens: number; completionTokens: number }): MessagesEvent[] {
    const out: MessagesEvent[] = [];
    if (!this.started) out.push(...this.start(''));
    out.push(...this.close());
    const u = this.usage ?? {
      prompt_tokens: fallback.promptTokens,
      completion_tokens: fallback.completionTokens,
      total_tokens: fallback.promptTokens + fallback.completionTokens,
    };
    const au = anthropicUsage(u);
    out.push({
      event: 'message_delta',
      data: {
        type: 'message_delta',
        delta: { stop_reason: this.stop ?? 'end_turn', stop_sequence: null },
        usage: {
          input_tokens: au.input_tokens,
          output_tokens: au.output_tokens,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: au.cache_read_input_tokens,
        },
      },
    });
    out.push({ event: 'message_stop', data: { type: 'message_stop' } });
    return out;
  }

  private start(id: string): MessagesEvent[] {
    this.started = true;
    return [
      {
        event: 'message_start',
        data: {
          type: 'message_start',
          message: {
            id: messageId(id || 'gateway'),
            type: 'message',
            role: 'assistant',
            model: this.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: this.promptTokens, output_tokens: 1 },
          },
        },
      },
      { event: 'ping', data: { type: 'ping' } },
    ];
  }

  private open(kind: 'text' | 'tool', block: Block): MessagesEvent[] {
    const out = this.close();
    this.block = { index: this.next++, kind };
    out.push({
      event: 'content_block_start',
      data: { type: 'content_block_start', index: this.block.index, content_block: block },
    });
    return out;
  }

  private close(): MessagesEvent[] {
    if (!this.block) return [];
    const index = this.block.index;
    this.block = null;
    return [{ event: 'content_block_stop', data: { type: 'content_block_stop', index } }];
  }

  private delta(delta: Record<string, unknown>): MessagesEvent {
    return {
      event: 'content_block_delta',
      data: { type: 'content_block_delta', index: this.block!.index, delta },
    };
  }
}
