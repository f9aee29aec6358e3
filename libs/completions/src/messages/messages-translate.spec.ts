import { ChunksToEvents, chatToMessage, messagesToChat } from './messages-translate';
import { validateMessagesRequest } from './messages-request';
import { countMessagesPromptTokens, IMAGE_TOKENS } from '../tokens';

describe('messagesToChat', () => {
  it('maps system, images, tool use and tool results, stop sequences and tool choice', () => {
    const chat = messagesToChat(
      {
        model: 'm',
        max_tokens: 99,
        system: [{ type: 'text', text: 'Be brief.' }],
        stop_sequences: ['END'],
        tools: [{ name: 'w', input_schema: { type: 'object' } }],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Look' },
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
            ],
          },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'hmm', signature: 's' },
              { type: 'tool_use', id: 't1', name: 'w', input: { a: 1 } },
            ],
          },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'ok' }] }],
          },
        ],
      },
      'up',
      50,
    );
    expect(chat).toEqual({
      model: 'up',
      max_tokens: 50,
      stop: ['END'],
      tools: [{ type: 'function', function: { name: 'w', parameters: { type: 'object' } } }],
      tool_choice: 'required',
      parallel_tool_calls: false,
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Look' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'w', arguments: '{"a":1}' } }],
        },
        { role: 'tool', tool_call_id: 't1', content: 'ok' },
      ],
    });
  });

  it('refuses a block an OpenAI-compatible upstream cannot take, naming it', () => {
    expect(() =>
      messagesToChat(
        {
          model: 'm',
          max_tokens: 1,
          messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }],
        },
        'up',
        1,
      ),
    ).toThrow(/document/);
  });
});

describe('chatToMessage and ChunksToEvents', () => {
  it('a completion with cached tokens becomes a message with cache_read_input_tokens', () => {
    const m = chatToMessage(
      {
        id: 'x',
        object: 'chat.completion',
        created: 1,
        model: 'up',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'length' }],
        usage: {
          prompt_tokens: 10,
          completion_tokens: 2,
          total_tokens: 12,
          prompt_tokens_details: { cached_tokens: 4 },
        },
      },
      'up',
    );
    expect(m).toMatchObject({
      id: 'msg_x',
      content: [{ type: 'text', text: 'Hi' }],
      stop_reason: 'max_tokens',
      usage: { input_tokens: 6, cache_read_input_tokens: 4, output_tokens: 2 },
    });
  });

  it("chunks become Anthropic's event sequence, text then a tool call", () => {
    const t = new ChunksToEvents('m', 7);
    const chunk = (delta: object, finish: string | null = null) =>
      ({
        id: 'c',
        object: 'chat.completion.chunk',
        created: 1,
        model: 'm',
        choices: [{ index: 0, delta, finish_reason: finish }],
      }) as never;
    const events = [
      ...t.push(chunk({ role: 'assistant', content: 'Hel' })),
      ...t.push(chunk({ content: 'lo' })),
      ...t.push(
        chunk({ tool_calls: [{ index: 0, id: 'call', function: { name: 'w', arguments: '{"a"' } }] }),
      ),
      ...t.push(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] })),
      ...t.push(chunk({}, 'tool_calls')),
      ...t.finish({ promptTokens: 7, completionTokens: 3 }),
    ];
    expect(events.map((e) => e.event)).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(events[6].data.content_block).toMatchObject({ type: 'tool_use', id: 'call', name: 'w' });
    expect(events[10].data).toMatchObject({
      delta: { stop_reason: 'tool_use' },
      usage: { input_tokens: 7, output_tokens: 3 },
    });
  });
});

describe('validateMessagesRequest and the prompt estimate', () => {
  it('requires max_tokens and a known role', () => {
    expect(() => validateMessagesRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] })).toThrow(
      /max_tokens/,
    );
    expect(() =>
      validateMessagesRequest({ model: 'm', max_tokens: 1, messages: [{ role: 'system', content: 'x' }] }),
    ).toThrow(/role/);
  });

  it('counts system, blocks and tools', () => {
    const base = { messages: [{ role: 'user', content: 'Hello there' }] };
    countMessagesPromptTokens(base); // loads the encoder (the estimator falls back to bytes meanwhile)
    const n = countMessagesPromptTokens(base);
    expect(countMessagesPromptTokens({ ...base, system: 'You are a helpful assistant.' })).toBeGreaterThan(
      n + 3,
    );
    expect(
      countMessagesPromptTokens({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Hello there' },
              { type: 'image', source: {} },
            ],
          },
        ],
      }),
    ).toBe(n + IMAGE_TOKENS.other);
    expect(
      countMessagesPromptTokens({ ...base, tools: [{ name: 'weather', input_schema: {} }] }),
    ).toBeGreaterThan(n);
  });
});
