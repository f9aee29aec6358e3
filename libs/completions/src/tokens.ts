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

/** Special tokens (`<|endoftext|>`) in client text are plain text, not an error. */
const encode = (text: string) => enc().encode(text, [], []);

/**
 * js-tiktoken's byte-pair merge is quadratic (or worse) in the length of one pre-token: 1,000
 * letters without a break take 200 ms, 16,000 take 30 s. A run of one character class
 * that long (base64, a long URL, padding) is cut into slices of 16 characters.
 */
const LONG_RUN = /[\p{L}\p{M}]{32,}|[^\s\p{L}\p{N}]{32,}|\s{32,}/gu;
const RUN_SLICE = 16;

/**
 * Characters counted exactly per counter (a prompt, or one answer): about 8k tokens and
 * at most ~50 ms of CPU on hostile input. Beyond, the rest is extrapolated at the rate
 * measured so far, so a 1 MB body cannot hold the event loop.
 */
export const EXACT_CHARS = 32 * 1024;

function exactCount(text: string): number {
  let n = 0;
  let last = 0;
  for (const m of text.matchAll(LONG_RUN)) {
    if (m.index > last) n += encode(text.slice(last, m.index)).length;
    for (let i = 0; i < m[0].length; i += RUN_SLICE) n += encode(m[0].slice(i, i + RUN_SLICE)).length;
    last = m.index + m[0].length;
  }
  if (last < text.length) n += encode(last ? text.slice(last) : text).length;
  return n;
}

/** Counts several texts against one exact-count budget (docs/models.md, "Usage and charges"). */
export class TokenCounter {
  private charsLeft = EXACT_CHARS;
  private exactChars = 0;
  private exactTokens = 0;

  count(text: string): number {
    return this.countHead(text, text.length);
  }

  /**
   * The count of a text of `length` characters that starts with `head` (at least
   * EXACT_CHARS of it, or all of it): a stream keeps only that much of its answer.
   */
  countHead(head: string, length: number): number {
    if (!length) return 0;
    const exact = head.length <= this.charsLeft ? head : head.slice(0, this.charsLeft);
    const n = exact ? exactCount(exact) : 0;
    this.charsLeft -= exact.length;
    this.exactChars += exact.length;
    this.exactTokens += n;
    if (exact.length === length) return n;
    const rate = this.exactTokens / Math.max(1, this.exactChars) || 0.25;
    return n + Math.ceil((length - exact.length) * rate);
  }
}

export function countTokens(text: string): number {
  return new TokenCounter().count(text);
}

/** For the mock's max_tokens cut (short texts only). */
export function encodeTokens(text: string): number[] {
  return encode(text);
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
  const c = new TokenCounter();
  let n = 3;
  for (const m of req.messages) {
    n += 3 + c.count(m.role) + c.count(contentText(m.content));
    if (Array.isArray(m.content)) n += m.content.filter((p) => p.type === 'image_url').length * IMAGE_TOKENS;
    if (m.name) n += 1 + c.count(m.name);
    if (m.tool_calls?.length) n += c.count(JSON.stringify(m.tool_calls));
    if (m.tool_call_id) n += c.count(m.tool_call_id);
  }
  if (req.tools?.length) n += c.count(JSON.stringify(req.tools));
  return n;
}

type AnthropicBlock = Record<string, unknown> & { type: string };

/** The text of Anthropic content blocks as the tokenizer sees it; images are counted apart. */
function blocksText(content: unknown, c: TokenCounter): number {
  if (typeof content === 'string') return c.count(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const b of content as AnthropicBlock[]) {
    if (b?.type === 'text' && typeof b.text === 'string') n += c.count(b.text);
    else if (b?.type === 'image') n += IMAGE_TOKENS;
    else if (b?.type === 'tool_use')
      n += c.count(String(b.name ?? '')) + c.count(JSON.stringify(b.input ?? {}));
    else if (b?.type === 'tool_result') n += c.count(String(b.tool_use_id ?? '')) + blocksText(b.content, c);
    else if (b?.type === 'thinking' && typeof b.thinking === 'string') n += c.count(b.thinking);
    else if (b && typeof b === 'object') n += c.count(JSON.stringify(b));
  }
  return n;
}

/**
 * Prompt tokens of an Anthropic Messages request, counted like `countPromptTokens` (same
 * tokenizer, same per-message overhead): system, messages and their content blocks, tools.
 */
export function countMessagesPromptTokens(req: {
  system?: unknown;
  messages: { role: string; content: unknown }[];
  tools?: unknown[];
}): number {
  const c = new TokenCounter();
  let n = 3;
  if (req.system != null) n += 3 + blocksText(req.system, c);
  for (const m of req.messages) n += 3 + c.count(m.role) + blocksText(m.content, c);
  if (req.tools?.length) n += c.count(JSON.stringify(req.tools));
  return n;
}
