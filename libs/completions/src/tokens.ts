import { Tiktoken, TiktokenBPE } from 'js-tiktoken/lite';
import type { ChatMessage, ChatRequest } from './chat/openai-types';

let encoder: Tiktoken | undefined;

/**
 * cl100k_base for every model: close enough for reservations and for the rare answer a
 * provider sends without usage, and a third of o200k's memory (about 35 MB of heap against
 * 70). Loaded on first use.
 */
function enc(): Tiktoken {
  if (!encoder) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ranks = require('js-tiktoken/ranks/cl100k_base') as TiktokenBPE | { default: TiktokenBPE };
    encoder = new Tiktoken('default' in ranks ? ranks.default : ranks);
  }
  return encoder;
}

export function countTokens(text: string): number {
  return text ? enc().encode(text).length : 0;
}

export function encodeTokens(text: string): number[] {
  return enc().encode(text);
}

export function decodeTokens(tokens: number[]): string {
  return enc().decode(tokens);
}

function contentText(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let s = '';
  for (const p of content) {
    if (p.type === 'text' && typeof p.text === 'string') s += p.text;
    else if (p.type === 'refusal' && typeof p.refusal === 'string') s += p.refusal;
  }
  return s;
}

/** Per-image estimate: OpenAI's "low detail" figure; enough for a reservation. */
const IMAGE_TOKENS = 85;

/**
 * Prompt tokens as OpenAI counts them for chat models (3 per message, 1 per name,
 * 3 priming the reply), plus the tool definitions as JSON.
 */
export function countPromptTokens(req: Pick<ChatRequest, 'messages' | 'tools'>): number {
  let n = 3;
  for (const m of req.messages) {
    n += 3 + countTokens(m.role) + countTokens(contentText(m.content));
    if (Array.isArray(m.content)) n += m.content.filter((p) => p.type === 'image_url').length * IMAGE_TOKENS;
    if (m.name) n += 1 + countTokens(m.name);
    if (m.tool_calls?.length) n += countTokens(JSON.stringify(m.tool_calls));
    if (m.tool_call_id) n += countTokens(m.tool_call_id);
  }
  if (req.tools?.length) n += countTokens(JSON.stringify(req.tools));
  return n;
}
