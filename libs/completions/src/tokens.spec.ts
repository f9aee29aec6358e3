import { countPromptTokens, countTokens } from './tokens';
import { countCompletion, StreamTally } from './usage';

describe('token counts', () => {
  it('counts text with cl100k_base', () => {
    expect(countTokens('')).toBe(0);
    expect(countTokens('hello world')).toBe(2);
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
