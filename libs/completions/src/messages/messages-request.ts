import { ApiError } from '@app/observability';
import { Validator } from '../chat/chat-request';
import type { AnthropicMessage, Block } from '../providers/anthropic-translate';

/** A validated Messages API request (https://docs.anthropic.com/en/api/messages); unknown fields travel on. */
export interface MessagesRequest {
  model: string;
  messages: AnthropicMessage[] | { role: 'user' | 'assistant'; content: string | Block[] }[];
  max_tokens: number;
  system?: string | Block[];
  stream?: boolean;
  stop_sequences?: string[];
  temperature?: number;
  top_p?: number;
  top_k?: number;
  tools?: { name: string; description?: string; input_schema?: Record<string, unknown>; type?: string }[];
  tool_choice?: {
    type: 'auto' | 'any' | 'tool' | 'none';
    name?: string;
    disable_parallel_tool_use?: boolean;
  };
  metadata?: { user_id?: string };
  thinking?: Record<string, unknown>;
  [k: string]: unknown;
}

/** A count_tokens request: a Messages request without max_tokens or stream. */
export type CountTokensRequest = Pick<
  MessagesRequest,
  'model' | 'messages' | 'system' | 'tools' | 'tool_choice'
> & {
  [k: string]: unknown;
};

/** Upper bound on max_tokens: what any Claude model accepts, and what a reservation may hold. */
const MAX_TOKENS_CAP = 1_000_000;

function checkContent(v: Validator, content: unknown, path: string): void {
  if (typeof content === 'string') return;
  if (!Array.isArray(content)) v.fail(path, `${path} must be a string or an array of content blocks`);
  (content as unknown[]).forEach((b, i) => {
    v.object(b, `${path}[${i}]`);
    v.string((b as Record<string, unknown>).type, `${path}[${i}].type`, { required: true, nonEmpty: true });
  });
}

function checkCommon(v: Validator, b: Record<string, unknown>): void {
  v.string(b.model, 'model', { required: true, nonEmpty: true });
  if (!Array.isArray(b.messages) || b.messages.length === 0)
    v.fail('messages', 'messages must be a non-empty array');
  (b.messages as unknown[]).forEach((m, i) => {
    v.object(m, `messages[${i}]`);
    v.oneOf((m as Record<string, unknown>).role, `messages[${i}].role`, ['user', 'assistant']);
    if ((m as Record<string, unknown>).role === undefined)
      v.fail(`messages[${i}].role`, `messages[${i}].role is required`);
    checkContent(v, (m as Record<string, unknown>).content, `messages[${i}].content`);
  });
  if (b.system != null) checkContent(v, b.system, 'system');
  if (b.tools != null) {
    if (!Array.isArray(b.tools)) v.fail('tools', 'tools must be an array');
    (b.tools as unknown[]).forEach((t, i) => {
      v.object(t, `tools[${i}]`);
      v.string((t as Record<string, unknown>).name, `tools[${i}].name`, { required: true, nonEmpty: true });
    });
  }
  if (b.tool_choice != null) {
    v.object(b.tool_choice, 'tool_choice');
    v.oneOf((b.tool_choice as Record<string, unknown>).type, 'tool_choice.type', [
      'auto',
      'any',
      'tool',
      'none',
    ]);
  }
  if (b.metadata != null) v.object(b.metadata, 'metadata');
  if (b.thinking != null) v.object(b.thinking, 'thinking');
}

/** The first problem of a Messages body as a 400 naming the field (rendered in Anthropic's shape). */
export function validateMessagesRequest(body: unknown): MessagesRequest {
  const v = new Validator();
  v.object(body, '');
  const b = body as Record<string, unknown>;
  checkCommon(v, b);
  if (b.max_tokens === undefined) v.fail('max_tokens', 'max_tokens: Field required');
  v.integer(b.max_tokens, 'max_tokens', 1, MAX_TOKENS_CAP);
  v.boolean(b.stream, 'stream');
  v.number(b.temperature, 'temperature', 0, 1);
  v.number(b.top_p, 'top_p', 0, 1);
  v.integer(b.top_k, 'top_k', 0);
  if (b.stop_sequences != null) {
    if (!Array.isArray(b.stop_sequences))
      v.fail('stop_sequences', 'stop_sequences must be an array of strings');
    (b.stop_sequences as unknown[]).forEach((s, i) =>
      v.string(s, `stop_sequences[${i}]`, { required: true, nonEmpty: true }),
    );
  }
  return body as MessagesRequest;
}

export function validateCountTokensRequest(body: unknown): CountTokensRequest {
  const v = new Validator();
  v.object(body, '');
  checkCommon(v, body as Record<string, unknown>);
  return body as CountTokensRequest;
}

/** The system prompt as plain text (a string, or its text blocks). */
export function systemText(system: MessagesRequest['system']): string {
  if (system == null) return '';
  if (typeof system === 'string') return system;
  return system
    .filter((b) => b.type === 'text' && typeof b.text === 'string')
    .map((b) => b.text as string)
    .join('\n\n');
}

/** A message's content as blocks (a string is one text block). */
export function blocksOf(content: string | Block[]): Block[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
}

export const unsupportedBlock = (type: string, param: string) =>
  ApiError.badRequest(
    `Content block "${type}" is not supported by this model's provider`,
    'unsupported_parameter',
    param,
  );
