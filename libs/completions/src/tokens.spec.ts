import {
  countPromptTokens,
  countTokens,
  encodeTokens,
  EXACT_CHARS,
  IMAGE_TOKENS,
  PromptEstimator,
} from './tokens';
import { countCompletion, StreamTally } from './usage';

describe('token counts', () => {
  it('counts text with cl100k_base', () => {
    expect(countTokens('')).toBe(0);
    expect(countTokens('hello world')).toBe(2);
  });

  it('treats special tokens in client text as text', () => {
    expect(countTokens('hi <|endoftext|> there')).toBeGreaterThan(3);
  });

  it('answers (not prompts) stay fast on hostile input: long runs without a break, and huge texts', () => {
    const t0 = Date.now();
    const run = countTokens('x'.repeat(100_000));
    const b64 = countTokens(Buffer.alloc(300_000, 7).toString('base64'));
    const spaces = countTokens(' '.repeat(200_000));
    const prose = countTokens('The quick brown fox jumps over the lazy dog. '.repeat(25_000));
    expect(Date.now() - t0).toBeLessThan(3000);
    for (const n of [run, b64, spaces]) expect(n).toBeGreaterThan(1000);
    // beyond EXACT_CHARS, extrapolated at the measured rate: 10 tokens per sentence here
    expect(prose).toBeGreaterThan(240_000);
    expect(prose).toBeLessThan(260_000);
  });

  it('counts exactly below EXACT_CHARS, with no long runs', () => {
    const prose =
      'The quick brown fox jumps over the lazy dog.\n'.repeat(100) + 'Ünïcödé 🦊 {"json": [1, 2, 3]}';
    expect(prose.length).toBeLessThan(EXACT_CHARS);
    expect(countTokens(prose)).toBe(encodeTokens(prose).length);
  });

  it('counts a chat prompt the way OpenAI does (3 per message, 3 priming)', () => {
    // "You are helpful." = 4, "Hi" = 1, roles system/user = 1 each
    expect(
      countPromptTokens({
        messages: [
          { role: 'system', content: 'You are helpful.' },
          { role: 'user', content: 'Hi' },
        ],
      }),
    ).toBe(3 + (3 + 1 + 4) + (3 + 1 + 1));
  });

  it('counts text parts, images by their documented bound (by detail), and tools', () => {
    const plain = countPromptTokens({ messages: [{ role: 'user', content: 'Hi' }] });
    const image = (detail?: 'low' | 'high') =>
      countPromptTokens({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Hi' },
              {
                type: 'image_url',
                image_url: { url: 'https://x.test/a.png', ...(detail ? { detail } : {}) },
              },
            ],
          },
        ],
      });
    expect(image('low')).toBe(plain + 85);
    expect(image()).toBe(plain + IMAGE_TOKENS.other);
    expect(image('high')).toBe(plain + IMAGE_TOKENS.other);
    const withTools = countPromptTokens({
      messages: [{ role: 'user', content: 'Hi' }],
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
    });
    expect(withTools).toBeGreaterThan(plain);
  });

  describe('the prompt estimate is never below a full count (issue 12: crafted prompts)', () => {
    /** Realistic CJK prose: sentences cut before their "。" are whole pre-tokens, so counts add up. */
    const SENTENCES = [
      '我们今天讨论的是人工智能在日常生活中的应用以及它对社会的影响',
      '这个系统需要在多个实例之间保持一致的配额计数',
      '东京的天气预报说明天会下雨请记得带伞',
      '数据库迁移应该可以回滚并且不丢失任何记录',
    ];
    const memo = new Map<string, number>();
    const fullCount = (pieces: string[]) =>
      pieces.reduce((n, p) => {
        if (!memo.has(p)) memo.set(p, encodeTokens(p).length);
        return n + memo.get(p)!;
      }, 0);

    it('32 KiB of ASCII then 90k CJK characters: at or above the full count, and fast', () => {
      const ascii = 'The quick brown fox jumps over the lazy dog. '.repeat(750).slice(0, 32 * 1024);
      const pieces: string[] = [];
      let cjk = 0;
      for (let i = 0; cjk < 90_000; i++) {
        const s = (i ? '。' : '') + SENTENCES[i % SENTENCES.length];
        pieces.push(s);
        cjk += s.length;
      }
      const text = ascii + pieces.join('');
      // ASCII ends with a space-free word boundary: the CJK run starts a new pre-token only
      // after its first character, so count the junction piece as one.
      const full = encodeTokens(ascii + pieces[0]).length + fullCount(pieces.slice(1));
      const t0 = performance.now();
      const estimate = new PromptEstimator().text(text).total;
      const ms = performance.now() - t0;
      expect(estimate).toBeGreaterThanOrEqual(full);
      expect(full).toBeGreaterThan(90_000); // the old extrapolation reserved ~31k for this
      expect(ms).toBeLessThan(500);
    });

    it('50 images: at or above the providers published maxima', () => {
      const content = Array.from({ length: 50 }, () => ({
        type: 'image_url',
        image_url: { url: 'data:image/png;base64,AAAA' },
      }));
      const n = countPromptTokens({ messages: [{ role: 'user', content }] });
      // OpenAI high detail: 85 + 170 x 8 tiles; Anthropic: 1.15 MP / 750
      expect(n).toBeGreaterThanOrEqual(50 * Math.max(85 + 170 * 8, Math.ceil((1092 * 1092) / 750)));
    });

    it('a 200 KB tool schema: at or above the full count', () => {
      const properties: Record<string, unknown> = {};
      for (let i = 0; i < 12; i++)
        properties[`field_${i}`] = {
          type: 'string',
          description: `The value of field number ${i}, as text.`,
        };
      const tool = {
        type: 'function' as const,
        function: { name: 'big', parameters: { type: 'object', properties } },
      };
      const tools = Array.from({ length: Math.ceil(200_000 / JSON.stringify(tool).length) }, () => tool);
      const json = JSON.stringify(tools);
      expect(json.length).toBeGreaterThanOrEqual(200_000);
      const messages = [{ role: 'user' as const, content: 'Hi' }];
      // the full count, piece by piece: each piece starts a pre-token (`},{"` ends a punctuation run)
      const full = 3 + 3 + 1 + 1 + fullCount(json.split(/(?=type":"function")/));
      expect(countPromptTokens({ messages, tools })).toBeGreaterThanOrEqual(full);
    });

    it('file and audio parts, tool calls and unknown fields count by their bounds', () => {
      const base = countPromptTokens({ messages: [{ role: 'user', content: 'Hi' }] });
      const file = countPromptTokens({
        messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'A'.repeat(10_000) } }] }],
      });
      expect(file).toBeGreaterThanOrEqual(10_000);
      const audio = countPromptTokens({
        messages: [
          {
            role: 'user',
            content: [{ type: 'input_audio', input_audio: { data: 'A'.repeat(64_000), format: 'wav' } }],
          },
        ],
      });
      expect(audio).toBeGreaterThanOrEqual(1000);
      const calls = countPromptTokens({
        messages: [
          { role: 'user', content: 'Hi' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'c1',
                type: 'function',
                function: { name: 'lookup', arguments: '{"q":"weather in Paris"}' },
              },
            ],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'Sunny' },
        ],
      });
      expect(calls).toBeGreaterThan(base + 15);
      expect(
        countPromptTokens({ messages: [{ role: 'user', content: 'Hi', audio: { id: 'x'.repeat(100) } }] }),
      ).toBeGreaterThan(base + 100);
    });

    it('hostile text (long runs, base64, CJK without punctuation) is bounded by bytes, fast', () => {
      const t0 = performance.now();
      const run = new PromptEstimator().text('x'.repeat(100_000)).total;
      const b64 = new PromptEstimator().text(Buffer.alloc(300_000, 7).toString('base64')).total;
      const cjk = new PromptEstimator().text('漢'.repeat(50_000)).total;
      expect(performance.now() - t0).toBeLessThan(500);
      expect(run).toBe(100_000);
      expect(b64).toBe(400_000);
      expect(cjk).toBe(150_000);
    });
  });

  it('a streamed answer counts exactly like the same answer unstreamed', () => {
    const text = 'The quick brown fox jumps over the lazy dog. Ünïcödé 🦊 too.';
    const whole = countCompletion({
      id: 'x',
      object: 'chat.completion',
      created: 0,
      model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
    });
    const tally = new StreamTally();
    // split mid-word and mid-emoji-sequence boundaries (by code point)
    const pieces = Array.from(text).reduce<string[]>((acc, ch, i) => {
      if (i % 3 === 0) acc.push(ch);
      else acc[acc.length - 1] += ch;
      return acc;
    }, []);
    for (const p of pieces)
      tally.add({
        chunk: {
          id: 'x',
          object: 'chat.completion.chunk',
          created: 0,
          model: 'm',
          choices: [{ index: 0, delta: { content: p }, finish_reason: null }],
        },
      });
    expect(tally.completionTokens()).toBe(whole);
    expect(whole).toBe(countTokens(text));
  });

  it('a long streamed answer (beyond EXACT_CHARS) still counts like the same answer unstreamed', () => {
    const text = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(2000);
    const tally = new StreamTally();
    for (let i = 0; i < text.length; i += 7)
      tally.add({
        chunk: {
          id: 'x',
          object: 'chat.completion.chunk',
          created: 0,
          model: 'm',
          choices: [{ index: 0, delta: { content: text.slice(i, i + 7) }, finish_reason: null }],
        },
      });
    expect(text.length).toBeGreaterThan(EXACT_CHARS);
    expect(tally.completionTokens()).toBe(countTokens(text));
  });

  it('counts tool call names and arguments', () => {
    const tally = new StreamTally();
    tally.add({
      chunk: {
        id: 'x',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'm',
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                { index: 0, id: 'c', type: 'function', function: { name: 'lookup', arguments: '{"q":' } },
              ],
            },
            finish_reason: null,
          },
        ],
      },
    });
    tally.add({
      chunk: {
        id: 'x',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'm',
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] },
            finish_reason: null,
          },
        ],
      },
    });
    expect(tally.completionTokens()).toBe(countTokens('lookup{"q":"x"}'));
  });
});
