import type { ChatCompletion, ChatCompletionChunk, Usage } from './chat/openai-types';
import type { StreamItem } from './providers/provider';
import { countTokens } from './tokens';

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

const count = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** The provider's figures when they are usable. */
export function usageOf(u: Usage | null | undefined): TokenUsage | undefined {
  if (!u || !count(u.prompt_tokens) || !count(u.completion_tokens)) return undefined;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
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
 * choice, counted at the end. Concatenating before counting makes a streamed answer cost
 * exactly what the same answer unstreamed costs.
 */
export class StreamTally {
  private readonly text = new Map<number, string>();
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
      if (s) this.text.set(ch.index, (this.text.get(ch.index) ?? '') + s);
    }
  }

  completionTokens(): number {
    let n = 0;
    for (const s of this.text.values()) n += countTokens(s);
    return n;
  }
}
