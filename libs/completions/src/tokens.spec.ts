import { countPromptTokens, countTokens, encodeTokens, EXACT_CHARS } from './tokens';
import { countCompletion, StreamTally } from './usage';

describe('token counts', () => {
  it('counts text with cl100k_base', () => {
    expect(countTokens('')).toBe(0);
    expect(countTokens('hello world')).toBe(2);
  });

  it('treats special tokens in client text as text', () => {
    expect(countTokens('hi <|endoftext|> there')).toBeGreaterThan(3);
  });

  it('stays fast on hostile input: long runs without a break, and huge texts', () => {
    const t0 = Date.now();
    const run = countTokens('x'.repeat(100_000));
    const b64 = countTokens(Buffer.alloc(300_000, 7).toString('base64'));
    const spaces = countTokens(' '.repeat(200_000));
    const prose = countTokens('The quick brown fox jumps over the lazy dog. '.repeat(25_000));
    expect(Date.now() - t0).toBeLessThan(1000);
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

  it('counts text parts, images at a flat rate, and tools', () => {
    const plain = countPromptTokens({ messages: [{ role: 'user', content: 'Hi' }] });
    const parts = countPromptTokens({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hi' },
            { type: 'image_url', image_url: { url: 'https://x.test/a.png' } },
          ],
        },
      ],
    });
    expect(parts).toBe(plain + 85);
    const withTools = countPromptTokens({
      messages: [{ role: 'user', content: 'Hi' }],
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }],
    });
    expect(withTools).toBeGreaterThan(plain);
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
