import { ApiError } from '@app/observability';
import type { ChatRequest } from '../chat/openai-types';
import { AnthropicStreamTranslator, fromAnthropicResponse, toAnthropicRequest } from './anthropic-translate';

describe('OpenAI -> Anthropic request', () => {
  it('moves system prompts out, merges turns, maps tools, tool calls and results', () => {
    const req: ChatRequest = {
      model: 'claude',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'developer', content: [{ type: 'text', text: 'Use tools.' }] },
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: 'Let me check.',
          tool_calls: [
            { id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: '18C' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'And this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
      max_tokens: 100,
      temperature: 1.7,
      stop: 'END',
      user: 'u-1',
      tools: [
        {
          type: 'function',
          function: { name: 'weather', description: 'Weather', parameters: { type: 'object' } },
        },
      ],
      tool_choice: 'required',
      parallel_tool_calls: false,
      seed: 42,
    };
    expect(toAnthropicRequest(req, 'claude-sonnet-4-0', 4096, true)).toEqual({
      model: 'claude-sonnet-4-0',
      system: 'Be brief.\n\nUse tools.',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Let me check.' },
            { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: '18C' },
            { type: 'text', text: 'And this?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          ],
        },
      ],
      max_tokens: 100,
      temperature: 1,
      stop_sequences: ['END'],
      metadata: { user_id: 'u-1' },
      tools: [{ name: 'weather', description: 'Weather', input_schema: { type: 'object' } }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      stream: true,
    });
  });

  it('max_tokens: max_completion_tokens, else max_tokens, else the default', () => {
    const base: ChatRequest = { model: 'c', messages: [{ role: 'user', content: 'x' }] };
    expect(toAnthropicRequest(base, 'c', 4096, false).max_tokens).toBe(4096);
    expect(
      toAnthropicRequest({ ...base, max_tokens: 5, max_completion_tokens: 9 }, 'c', 4096, false).max_tokens,
    ).toBe(9);
    expect(toAnthropicRequest(base, 'c', 4096, false).stream).toBeUndefined();
  });

  it('refuses what Anthropic cannot do with a 400', () => {
    const base: ChatRequest = { model: 'c', messages: [{ role: 'user', content: 'x' }] };
    for (const [req, param] of [
      [{ ...base, n: 2 }, 'n'],
      [{ ...base, response_format: { type: 'json_schema' } }, 'response_format'],
      [
        { ...base, messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] },
        'messages[0].content[0]',
      ],
    ] as [ChatRequest, string][]) {
      try {
        toAnthropicRequest(req, 'c', 10, false);
        throw new Error('expected 400');
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        expect((e as ApiError).getStatus()).toBe(400);
        expect((e as ApiError).param).toBe(param);
      }
    }
  });
});

describe('Anthropic -> OpenAI answer', () => {
  it('maps content, tool use, stop reason and usage (cache tokens count as prompt)', () => {
    const c = fromAnthropicResponse(
      {
        id: 'msg_1',
        model: 'claude-sonnet-4-0',
        content: [
          { type: 'text', text: 'Checking. ' },
          { type: 'tool_use', id: 'toolu_9', name: 'weather', input: { city: 'Oslo' } },
        ],
        stop_reason: 'tool_use',
        usage: { input_tokens: 10, cache_read_input_tokens: 5, output_tokens: 7 },
      },
      1,
    );
    expect(c).toEqual({
      id: 'msg_1',
      object: 'chat.completion',
      created: 1,
      model: 'claude-sonnet-4-0',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Checking. ',
            tool_calls: [
              {
                id: 'toolu_9',
                type: 'function',
                function: { name: 'weather', arguments: '{"city":"Oslo"}' },
              },
            ],
          },
          finish_reason: 'tool_calls',
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: 15, completion_tokens: 7, total_tokens: 22 },
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
  ])('stop_reason %s -> finish_reason %s', (stop, finish) => {
    const c = fromAnthropicResponse({ id: 'm', model: 'c', content: [], stop_reason: stop, usage: {} });
    expect(c.choices[0].finish_reason).toBe(finish);
  });
});

describe('Anthropic stream -> OpenAI chunks', () => {
  it('translates event by event', () => {
    const t = new AnthropicStreamTranslator('fallback');
    const start = t.push('message_start', {
      message: { id: 'msg_s', model: 'claude-x', usage: { input_tokens: 12, output_tokens: 1 } },
    });
    expect(start.promptTokens).toBe(12);
    expect(start.chunks[0]).toMatchObject({
      id: 'msg_s',
      object: 'chat.completion.chunk',
      model: 'claude-x',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
    });
    expect(t.push('ping', {}).chunks).toEqual([]);
    expect(
      t.push('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }).chunks,
    ).toEqual([]);
    expect(
      t.push('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hel' } }).chunks[0]
        .choices[0].delta,
    ).toEqual({
      content: 'Hel',
    });
    t.push('content_block_stop', { index: 0 });
    expect(
      t.push('content_block_start', {
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_1', name: 'f', input: {} },
      }).chunks[0].choices[0].delta,
    ).toEqual({
      tool_calls: [{ index: 0, id: 'toolu_1', type: 'function', function: { name: 'f', arguments: '' } }],
    });
    expect(
      t.push('content_block_delta', {
        index: 1,
        delta: { type: 'input_json_delta', partial_json: '{"a":1}' },
      }).chunks[0].choices[0].delta,
    ).toEqual({ tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] });
    const delta = t.push('message_delta', {
      delta: { stop_reason: 'tool_use' },
      usage: { output_tokens: 9 },
    });
    expect(delta.chunks[0].choices[0]).toMatchObject({ delta: {}, finish_reason: 'tool_calls' });
    const stop = t.push('message_stop', {});
    expect(stop.done).toBe(true);
    expect(stop.chunks[0]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
    });
    expect(t.push('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }).error).toBe(
      'Overloaded',
    );
  });
});
