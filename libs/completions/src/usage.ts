import type { ChatCompletion, ChatCompletionChunk, Usage } from './chat/openai-types';
import type { StreamItem } from './providers/provider';
import { countTokens, decodeTokens, encodeTokens, EXACT_CHARS, TokenCounter } from './tokens';

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  /** Of the prompt tokens: written to the provider's prompt cache (Anthropic cache_creation_input_tokens). */
  cacheWriteTokens?: number;
  /** Of the prompt tokens: read from the provider's prompt cache (OpenAI cached_tokens, Anthropic cache_read_input_tokens). */
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

/** Texts up to this long have their counts kept: most stream chunks are a word or two. */
const SHORT_TEXT = 32;
const SHORT_COUNTS_MAX = 10_000;
const shortCounts = new Map<string, number>();

/** countTokens, kept for short texts (a stream near its grant counts each chunk: the same words again and again). */
function countChunk(text: string): number {
  if (text.length > SHORT_TEXT) return countTokens(text);
  let n = shortCounts.get(text);
  if (n === undefined) {
    if (shortCounts.size >= SHORT_COUNTS_MAX) shortCounts.clear();
    shortCounts.set(text, (n = countTokens(text)));
  }
  return n;
}

interface ChoiceState {
  /** Tokens of the text counted so far (the first `counted` part of the choice's text). */
  tokens: number;
  /** The text since the last count, and its UTF-8 bytes: an upper bound of its tokens (a token is >= 1 byte). */
  pending: string;
  pendingBytes: number;
  done: boolean;
}

/**
 * Cuts a stream at the grant (the cap sent upstream), per choice, for upstreams that ignore
 * it. Counting is deferred while it cannot matter: a choice whose counted tokens plus the
 * UTF-8 bytes of its uncounted text stay within the grant cannot be past it (a token is at
 * least one byte), so most streams count nothing here, and a long one counts its text in a
 * few batches (the concatenation, as an unstreamed answer is counted), not chunk by chunk.
 * The chunk that takes a choice past the grant is truncated there and given
 * `finish_reason: "length"`. Later chunks of a cut choice are dropped; `done` once every
 * choice ended.
 */
export class GrantGuard {
  private readonly choices = new Map<number, ChoiceState>();
  /** Some choice went past the grant. */
  cut = false;

  constructor(
    private readonly grant: number,
    private readonly n: number,
  ) {}

  /** Every choice ended (finished or cut): the rest of the stream is not needed. */
  get done(): boolean {
    if (this.choices.size < this.n) return false;
    for (const c of this.choices.values()) if (!c.done) return false;
    return true;
  }

  /** Completion tokens of what passed (only meaningful once `cut`): at most the grant per choice. */
  completionTokens(): number {
    let n = 0;
    for (const c of this.choices.values())
      n += Math.min(this.grant, c.tokens + (c.pending ? countTokens(c.pending) : 0));
    return n;
  }

  /** Checks one chunk; returns false when it must not be sent (every choice in it was already cut). */
  pass(item: StreamItem): boolean {
    const chunk = item.chunk;
    if (!chunk.choices?.length) return true;
    let changed = false;
    const kept: ChatCompletionChunk['choices'] = [];
    for (const ch of chunk.choices) {
      let st = this.choices.get(ch.index);
      if (!st) this.choices.set(ch.index, (st = { tokens: 0, pending: '', pendingBytes: 0, done: false }));
      if (st.done) {
        changed = true; // a cut choice: dropped
        continue;
      }
      const text = producedText(ch.delta as Produced);
      if (text) {
        st.pending += text;
        st.pendingBytes += Buffer.byteLength(text);
        // past the grant only if its uncounted text is: counted (with what came before it, at once)
        if (st.tokens + st.pendingBytes > this.grant) {
          const all = countChunk(st.pending);
          const before = st.pending.slice(0, st.pending.length - text.length);
          st.pending = '';
          st.pendingBytes = 0;
          if (st.tokens + all <= this.grant) st.tokens += all;
          else {
            // this chunk crosses the grant: cut where the text before it leaves no room
            if (before) st.tokens += countChunk(before);
            const room = this.grant - st.tokens;
            const content = typeof ch.delta.content === 'string' ? ch.delta.content : '';
            const keptText = room > 0 && content ? decodeTokens(encodeTokens(content).slice(0, room)) : '';
            const { tool_calls: _t, reasoning_content: _r, ...delta } = ch.delta as Record<string, unknown>;
            kept.push({ ...ch, delta: { ...delta, content: keptText }, finish_reason: 'length' });
            st.tokens += keptText ? countTokens(keptText) : 0;
            st.done = true;
            this.cut = true;
            changed = true;
            continue;
          }
        }
      }
      if (ch.finish_reason) st.done = true;
      kept.push(ch);
    }
    if (!changed) return true;
    if (!kept.length && chunk.usage == null) return false;
    item.chunk = { ...chunk, choices: kept };
    item.raw = undefined;
    item.bytes = undefined;
    return true;
  }
}
