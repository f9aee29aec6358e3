import type { ChatCompletion, ChatCompletionChunk, Usage } from './chat/openai-types';
import type { StreamItem } from './providers/provider';
import { countTokens, EXACT_CHARS, TokenCounter } from './tokens';

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  /** Of the prompt tokens: read from the provider's prompt cache (OpenAI cached_tokens). */
  cacheReadTokens?: number;
}

const count = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** OpenAI's `prompt_tokens_details.cached_tokens` (0 when absent or not a count within the prompt). */
export function cachedTokensOf(u: Usage | null | undefined): number {
  const c = (u?.prompt_tokens_details as { cached_tokens?: unknown } | undefined)?.cached_tokens;
  return count(c) && (c as number) <= (u?.prompt_tokens ?? 0) ? (c as number) : 0;
}

/** The provider's figures when they are usable. */
export function usageOf(u: Usage | null | undefined): TokenUsage | undefined {
  if (!u || !count(u.prompt_tokens) || !count(u.completion_tokens)) return undefined;
  const cached = cachedTokensOf(u);
  return {
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    ...(cached ? { cacheReadTokens: cached } : {}),
  };
}

type Produced = {
  content?: unknown;
  reasoning_content?: unknown;
  tool_calls?: { function?: { name?: string; arguments?: string } }[];
};

/** The text a message or delta produced: content, reasoning and tool calls, as the tokenizer sees it. */
function producedText(m: Produced | undefined): string {
  if (!m) return '';
  let s = typeof m.content === 'string' ? m.content : '';
  if (typeof m.reasoning_content === 'string') s += m.reasoning_content;
  for (const c of m.tool_calls ?? []) s += (c.function?.name ?? '') + (c.function?.arguments ?? '');
  return s;
}

/** Completion tokens of an answer that came without usage (tokenizer count, per choice). */
export function countCompletion(c: ChatCompletion): number {
  return c.choices.reduce((n, ch) => n + countTokens(producedText(ch.message as Produced)), 0);
}

/**
 * What a stream produced so far: the upstream's usage when it sent one, else the text per
 * choice, counted at the end. Counting the concatenation (not chunk by chunk) makes a
 * streamed answer cost exactly what the same answer unstreamed costs; only the first
 * EXACT_CHARS characters are kept (the counter extrapolates the rest from the length).
 */
export class StreamTally {
  private readonly text = new Map<number, { head: string; length: number }>();
  usage?: TokenUsage;
  promptTokens?: number;
  last?: ChatCompletionChunk;

  add(item: StreamItem): void {
    const c = item.chunk;
    this.last = c;
    if (item.promptTokens !== undefined) this.promptTokens = item.promptTokens;
    const u = usageOf(c.usage);
    if (u) this.usage = u;
    for (const ch of c.choices ?? []) {
      const s = producedText(ch.delta as Produced);
      if (!s) continue;
      const t = this.text.get(ch.index) ?? { head: '', length: 0 };
      if (t.head.length < EXACT_CHARS) t.head += s.slice(0, EXACT_CHARS - t.head.length);
      t.length += s.length;
      this.text.set(ch.index, t);
    }
  }

  completionTokens(): number {
    let n = 0;
    for (const t of this.text.values()) n += new TokenCounter().countHead(t.head, t.length);
    return n;
  }
}
