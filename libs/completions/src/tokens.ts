import type * as Cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import type { ChatRequest } from './chat/openai-types';

let encoder: typeof Cl100k | undefined;

/**
 * cl100k_base for every model: close enough for reservations and for the rare answer a
 * provider sends without usage. gpt-tokenizer (the same tokens as tiktoken; before it,
 * js-tiktoken: 34 -> 8 MB of heap and RSS +102 -> +36 MB once loaded, loading 823 -> 316 ms,
 * encoding ~5x faster, docs/BENCHMARKS.md "Prompt estimate"). Loaded on first use.
 */
function enc(): typeof Cl100k {
  if (!encoder) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    encoder = require('gpt-tokenizer/cjs/encoding/cl100k_base') as typeof Cl100k;
    encoder.encode('warm up the encoder', PLAIN); // its first encode builds lazy tables
  }
  return encoder;
}

/** Encode options: special tokens (`<|endoftext|>`) in client text are plain text, not an error. */
const PLAIN = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

const encode = (text: string) => enc().encode(text, PLAIN);

/**
 * Byte-pair merging grows faster than linearly with the length of one pre-token (js-tiktoken,
 * used before: 1,000 letters without a break took 200 ms, 16,000 took 30 s; gpt-tokenizer:
 * 34 and 98 ms). A run of one character class that long (base64, a long URL, padding) is cut
 * into slices of 16 characters, so no input makes the merge the cost.
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

/**
 * The prompt estimate (README "Quotas", docs/models.md "Usage and charges"): never below
 * the real cl100k count of the same input, and cheap whatever the body holds.
 *
 * Text is cut at pre-token boundaries (before a space that starts a word: cl100k's
 * pre-tokenizer never joins across one), so the pieces' counts add up to the whole's. A
 * piece is counted exactly when it is ASCII, has no run of one character class long enough
 * to make byte-pair merging slow (RUN_LIMIT), and the request's exact budget (EXACT_CHARS
 * characters and EXACT_MS of CPU) is not spent. Every other piece counts one token per UTF-8
 * byte, a strict upper bound (a token is at least one byte). Measured on this machine
 * with js-tiktoken (docs/BENCHMARKS.md): English at ~1 µs per character, base64 at ~6 µs,
 * CJK at ~30 µs (a 32k-character CJK prompt held the event loop for ~1 s); a byte count is
 * about 1 ns per character. No extrapolation: a prompt cannot be shaped to be reserved below
 * its cost.
 *
 * Non-text parts have documented upper bounds (IMAGE_TOKENS, FILE_TOKENS, AUDIO_TOKENS).
 */
export const EXACT_MS = 25;
/** Characters always counted exactly, whatever the time taken (a few ms at worst). */
export const EXACT_FLOOR = 4096;
// eslint-disable-next-line no-control-regex -- ASCII is code points 0-127, controls included
const ASCII = /^[\x00-\x7f]*$/;
const RUN_LIMIT = /[\p{L}\p{N}]{64}|[^\s\p{L}\p{N}]{64}|\s{256}/u;
const WORD_START = / (?=\p{L})/gu;

export class PromptEstimator {
  private exactLeft = EXACT_CHARS;
  /** Set after the encoder is loaded: its one-time load is not the request's CPU. */
  private readonly deadline: number;
  total = 0;

  constructor() {
    // Load the ranks first: their one-time load (tens of ms) must not spend the CPU budget,
    // or the first prompt after a start is counted in bytes (found: 16 instead of 9 tokens).
    enc();
    this.deadline = performance.now() + EXACT_MS;
  }

  /**
   * The CPU budget applies past the first EXACT_FLOOR characters only, so a short prompt
   * is counted the same whatever the machine's load (mock usage and tests rely on it).
   */
  private overBudget(): boolean {
    return EXACT_CHARS - this.exactLeft > EXACT_FLOOR && performance.now() > this.deadline;
  }

  /** Adds an upper bound of the tokens of `text` (exact where cheap). */
  text(text: string): this {
    if (!text) return this;
    let pos = 0;
    let exact = '';
    const flush = () => {
      if (!exact) return;
      this.total += encode(exact).length;
      this.exactLeft -= exact.length;
      exact = '';
    };
    while (pos < text.length) {
      if (this.exactLeft - exact.length <= 0 || this.overBudget()) {
        flush();
        this.total += Buffer.byteLength(pos ? text.slice(pos) : text);
        return this;
      }
      WORD_START.lastIndex = pos + 1;
      const m = WORD_START.exec(text);
      const end = m ? m.index : text.length;
      const piece = text.slice(pos, end);
      if (exact.length + piece.length <= this.exactLeft && ASCII.test(piece) && !RUN_LIMIT.test(piece)) {
        exact += piece;
        if (exact.length >= 2048) flush();
      } else {
        flush();
        this.total += Buffer.byteLength(piece);
      }
      pos = end;
    }
    flush();
    return this;
  }

  /** Adds a fixed number of tokens (per-message overhead, a non-text part's bound). */
  add(n: number): this {
    this.total += n;
    return this;
  }
}

/**
 * Per image part: `detail: "low"` is 85 tokens at OpenAI; any other detail is bounded by
 * the largest image either provider bills: OpenAI high detail (gpt-4o class) 85 + 170 x 8
 * tiles = 1,445; Anthropic about (1,092 x 1,092) / 750 = 1,590 (images are downscaled to
 * ~1.15 MP first). gpt-4o-mini reports images at ~33 times that (it prices them so): an
 * estimate cannot know that model-specific factor; settle charges the reported usage.
 */
export const IMAGE_TOKENS = { low: 85, other: 1600 };
/**
 * A `file` part (a PDF: text plus one image per page): its base64 data's length (a byte of
 * file per 1.33 characters: far above the text it holds plus IMAGE_TOKENS.other per page of
 * any real PDF), at least FILE_TOKENS.min; a `file_id` (size unknown here): FILE_TOKENS.byId.
 */
export const FILE_TOKENS = { min: 1600, byId: 32_000 };
/**
 * `input_audio`: OpenAI bills about 10 tokens per second of audio; one second takes at least
 * 1,000 bytes (8 kbit/s, below any usable codec): one token per 64 base64 characters (48
 * bytes) bounds it, at least AUDIO_TOKENS.min.
 */
export const AUDIO_TOKENS = { perBase64Chars: 64, min: 100 };

function part(e: PromptEstimator, p: Record<string, unknown>): void {
  switch (p.type) {
    case 'text':
      e.text(typeof p.text === 'string' ? p.text : '');
      return;
    case 'refusal':
      e.text(typeof p.refusal === 'string' ? p.refusal : '');
      return;
    case 'image_url': {
      const detail = (p.image_url as { detail?: unknown } | undefined)?.detail;
      e.add(detail === 'low' ? IMAGE_TOKENS.low : IMAGE_TOKENS.other);
      return;
    }
    case 'file': {
      const f = (p.file ?? {}) as { file_data?: unknown; filename?: unknown };
      if (typeof f.filename === 'string') e.text(f.filename);
      e.add(
        typeof f.file_data === 'string' ? Math.max(FILE_TOKENS.min, f.file_data.length) : FILE_TOKENS.byId,
      );
      return;
    }
    case 'input_audio': {
      const data = (p.input_audio as { data?: unknown } | undefined)?.data;
      const len = typeof data === 'string' ? data.length : 0;
      e.add(Math.max(AUDIO_TOKENS.min, Math.ceil(len / AUDIO_TOKENS.perBase64Chars)));
      return;
    }
    default:
      // a part type this gateway does not know: its JSON, one token per byte
      e.add(Buffer.byteLength(JSON.stringify(p)));
  }
}

const MESSAGE_FIELDS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id']);

/**
 * The prompt estimate of a chat request, never below cl100k's count of it as OpenAI frames
 * it (3 tokens per message, 1 per name, 3 priming the reply): every text counted (see
 * PromptEstimator), non-text parts by their documented bounds, tool definitions and tool
 * calls as JSON, and any other message field by its JSON's bytes.
 */
export function countPromptTokens(req: Pick<ChatRequest, 'messages' | 'tools'>): number {
  const e = new PromptEstimator().add(3);
  for (const m of req.messages) {
    e.add(3).text(m.role);
    if (typeof m.content === 'string') e.text(m.content);
    else if (Array.isArray(m.content)) for (const p of m.content) part(e, p as Record<string, unknown>);
    if (m.name) e.add(1).text(m.name);
    if (m.tool_calls?.length) e.text(JSON.stringify(m.tool_calls));
    if (typeof m.tool_call_id === 'string') e.text(m.tool_call_id);
    for (const [k, v] of Object.entries(m))
      if (!MESSAGE_FIELDS.has(k) && v != null) e.add(Buffer.byteLength(JSON.stringify(v)));
  }
  if (req.tools?.length) e.text(JSON.stringify(req.tools));
  return e.total;
}

type AnthropicBlock = Record<string, unknown> & { type: string };

/** Anthropic content blocks: text and thinking counted, images and documents by their bounds, the rest as JSON. */
function blocks(e: PromptEstimator, content: unknown): void {
  if (typeof content === 'string') return void e.text(content);
  if (!Array.isArray(content)) return;
  for (const b of content as AnthropicBlock[]) {
    if (typeof b !== 'object' || b === null) continue;
    if (b.type === 'text') e.text(typeof b.text === 'string' ? b.text : '');
    else if (b.type === 'thinking') e.text(typeof b.thinking === 'string' ? b.thinking : '');
    else if (b.type === 'image') e.add(IMAGE_TOKENS.other);
    else if (b.type === 'document') {
      const data = (b.source as { data?: unknown } | undefined)?.data;
      e.add(typeof data === 'string' ? Math.max(FILE_TOKENS.min, data.length) : FILE_TOKENS.byId);
    } else if (b.type === 'tool_use') e.text(String(b.name ?? '')).text(JSON.stringify(b.input ?? {}));
    else if (b.type === 'tool_result') {
      e.text(String(b.tool_use_id ?? ''));
      blocks(e, b.content);
    } else e.add(Buffer.byteLength(JSON.stringify(b)));
  }
}

/**
 * The prompt estimate of an Anthropic Messages request, by the same PromptEstimator and
 * framing as `countPromptTokens`: the system prompt as one more message, each message's
 * content blocks, the tool definitions as JSON.
 */
export function countMessagesPromptTokens(req: {
  system?: unknown;
  messages: { role: string; content: unknown }[];
  tools?: unknown[];
}): number {
  const e = new PromptEstimator().add(3);
  if (req.system != null) {
    e.add(3).text('system');
    blocks(e, req.system);
  }
  for (const m of req.messages) {
    e.add(3).text(m.role);
    blocks(e, m.content);
  }
  if (req.tools?.length) e.text(JSON.stringify(req.tools));
  return e.total;
}
