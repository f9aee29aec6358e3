import type { ChatRequest } from '../chat/openai-types';
import { parseRoutingTable } from '../routing/routing-loader';
import { countTokens } from '../tokens';
import { MockProvider, mockAnswer } from './mock.provider';
import type { StreamItem } from './provider';

const table = parseRoutingTable(
  {
    models: {
      plain: { deployments: [{ provider: 'mock' }] },
      fixed: {
        deployments: [
          { provider: 'mock', options: { reply: 'Fixed.', prompt_tokens: 11, completion_tokens: 22 } },
        ],
      },
      slow: { deployments: [{ provider: 'mock', options: { latency_ms: 1000 } }] },
    },
  },
  'test',
  () => undefined,
);
const d = (name: string) => table.resolve(name)!.deployments[0];
const req = (content: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'plain',
  messages: [{ role: 'user', content }],
  ...extra,
});
const call = (name: string, r: ChatRequest, signal = new AbortController().signal) => ({
  request: r,
  deployment: d(name),
  signal,
  // the grant: the client's cap here (an unlimited meter), else 100
  maxTokens: r.max_completion_tokens ?? r.max_tokens ?? 100,
  timeouts: { connectMs: 1000, firstByteMs: 1000, idleMs: 1000 },
});

describe('mock provider', () => {
  const p = new MockProvider();

  it('answers deterministically from the prompt, with counted usage', async () => {
    const a = await p.complete(call('plain', req('What is 2+2?')));
    const b = await p.complete(call('plain', req('What is 2+2?')));
    expect(a.choices[0].message.content).toBe('This is a mock answer from plain. You said: "What is 2+2?"');
    expect(b.choices[0].message.content).toBe(a.choices[0].message.content);
    expect(a.usage!.completion_tokens).toBe(countTokens(a.choices[0].message.content!));
    expect(a.choices[0].finish_reason).toBe('stop');
  });

  it('honours max_tokens (finish_reason length) and configured token counts', async () => {
    const cut = await p.complete(call('plain', req('Hello there', { max_tokens: 3 })));
    expect(cut.choices[0].finish_reason).toBe('length');
    expect(countTokens(cut.choices[0].message.content!)).toBeLessThanOrEqual(3);
    const fixed = mockAnswer(req('x'), d('fixed'));
    expect(fixed).toMatchObject({ text: 'Fixed.', usage: { prompt_tokens: 11, completion_tokens: 22 } });
  });

  it('streams the same text and the same usage', async () => {
    const whole = await p.complete(call('plain', req('Stream me please')));
    const items: StreamItem[] = [];
    for await (const i of await p.stream(call('plain', req('Stream me please')))) items.push(i);
    const text = items.map((i) => i.chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0].message.content);
    expect(items.at(-2)!.chunk.choices[0].finish_reason).toBe('stop');
    expect(items.at(-1)!.chunk).toMatchObject({ choices: [], usage: whole.usage });
  });

  it('stops at once when aborted', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const pending = p.complete(call('slow', req('x'), ac.signal));
    setTimeout(() => ac.abort(new Error('gone')), 20);
    await expect(pending).rejects.toThrow('gone');
    expect(Date.now() - t0).toBeLessThan(500);
  });
});
