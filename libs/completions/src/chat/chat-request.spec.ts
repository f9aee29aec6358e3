import { ApiError } from '@app/observability';
import { validateChatRequest } from './chat-request';

const ok = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

function problem(body: unknown): { message: string; param: string | null; status: number } {
  try {
    validateChatRequest(body);
  } catch (e) {
    const err = e as ApiError;
    return { message: err.message, param: err.param, status: err.getStatus() };
  }
  throw new Error('expected a validation error');
}

describe('validateChatRequest', () => {
  it('accepts a full OpenAI request, unknown fields included', () => {
    const body = {
      ...ok,
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'developer', content: [{ type: 'text', text: 'x' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this?' },
            { type: 'image_url', image_url: { url: 'https://example.test/a.png', detail: 'low' } },
            { type: 'input_audio', input_audio: { data: 'AAA', format: 'wav' } },
          ],
          name: 'ann',
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: '42' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 10,
      max_completion_tokens: 20,
      temperature: 1.5,
      top_p: 0.9,
      n: 2,
      stop: ['a', 'b'],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
      parallel_tool_calls: false,
      user: 'u1',
      response_format: { type: 'json_object' },
      reasoning_effort: 'low',
      some_vendor_field: { a: 1 },
    };
    expect(validateChatRequest(body)).toBe(body);
  });

  it('accepts nulls where OpenAI does', () => {
    expect(() =>
      validateChatRequest({ ...ok, max_tokens: null, temperature: null, stop: null, stream_options: null }),
    ).not.toThrow();
  });

  it.each([
    [null, '', /body must be a JSON object/],
    [[], '', /body must be a JSON object/],
    [{ messages: ok.messages }, 'model', /model is required/],
    [{ ...ok, model: 3 }, 'model', /model must be a string/],
    [{ ...ok, model: '' }, 'model', /must not be empty/],
    [{ model: 'm' }, 'messages', /messages is required/],
    [{ model: 'm', messages: [] }, 'messages', /at least one/],
    [{ model: 'm', messages: ['hi'] }, 'messages[0]', /must be an object/],
    [{ model: 'm', messages: [{ role: 'boss', content: 'x' }] }, 'messages[0].role', /one of system/],
    [{ model: 'm', messages: [{ role: 'user' }] }, 'messages[0].content', /is required/],
    [{ model: 'm', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content', /string or an array/],
    [
      {
        model: 'm',
        messages: [{ role: 'system', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
      },
      'messages[0].content[0].type',
      /one of text/,
    ],
    [
      { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] },
      'messages[0].content[0].image_url',
      /must be an object/,
    ],
    [{ model: 'm', messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /is required/],
    [
      { model: 'm', messages: [{ role: 'assistant', tool_calls: [{ id: 'a', type: 'function' }] }] },
      'messages[0].tool_calls[0].function',
      /must be an object/,
    ],
    [{ ...ok, stream: 'yes' }, 'stream', /boolean/],
    [
      { ...ok, stream_options: { include_usage: true } },
      'stream_options',
      /only allowed when 'stream' is true/,
    ],
    [{ ...ok, max_tokens: 0 }, 'max_tokens', /at least 1/],
    [{ ...ok, max_tokens: 1e13 }, 'max_tokens', /at most 1000000/],
    [{ ...ok, max_completion_tokens: 1_000_001 }, 'max_completion_tokens', /at most 1000000/],
    [
      { model: 'm', messages: [{ role: 'tool', tool_call_id: ['c1'], content: 'x' }] },
      'messages[0].tool_call_id',
      /must be a string/,
    ],
    [
      { model: 'm', messages: [{ role: 'user', tool_call_id: 7, content: 'x' }] },
      'messages[0].tool_call_id',
      /must be a string/,
    ],
    [{ ...ok, max_tokens: 1.5 }, 'max_tokens', /integer/],
    [{ ...ok, max_completion_tokens: '10' }, 'max_completion_tokens', /integer/],
    [{ ...ok, temperature: 3 }, 'temperature', /between 0 and 2/],
    [{ ...ok, top_p: -1 }, 'top_p', /between 0 and 1/],
    [{ ...ok, n: 0 }, 'n', /at least 1/],
    [{ ...ok, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /at most 4/],
    [{ ...ok, stop: 1 }, 'stop', /string/],
    [{ ...ok, tools: {} }, 'tools', /array/],
    [
      { ...ok, tools: [{ type: 'function', function: { name: 'bad name' } }] },
      'tools[0].function.name',
      /match/,
    ],
    [{ ...ok, tool_choice: 'always' }, 'tool_choice', /one of none, auto, required/],
    [{ ...ok, tool_choice: 'required' }, 'tool_choice', /needs tools/],
    [{ ...ok, response_format: { type: 'xml' } }, 'response_format.type', /one of text/],
    [{ ...ok, user: 5 }, 'user', /string/],
  ])('%j -> 400 on %s', (body, param, message) => {
    const p = problem(body);
    expect(p.status).toBe(400);
    expect(p.param).toBe(param || null);
    expect(p.message).toMatch(message);
  });
});
