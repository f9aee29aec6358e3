import type { StreamItem } from './providers/provider';
import { GrantGuard } from './usage';

describe('GrantGuard', () => {
  const item = (content: string, finish: 'stop' | null = null): StreamItem => ({
    chunk: {
      id: 'c',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      choices: [{ index: 0, delta: { content }, finish_reason: finish }],
    },
    raw: '{}',
  });

  it('passes a stream within the grant untouched, and cuts the chunk that crosses it', () => {
    const guard = new GrantGuard(5, 1);
    const passed: StreamItem[] = [];
    for (let i = 0; i < 8; i++) {
      const it = item(' go');
      if (guard.pass(it)) passed.push(it);
      if (guard.done) break;
    }
    const text = passed.map((p) => p.chunk.choices[0].delta.content).join('');
    expect(text).toBe(' go'.repeat(5));
    expect(guard.cut).toBe(true);
    expect(passed.at(-1)!.chunk.choices[0].finish_reason).toBe('length');
    expect(passed.at(-1)!.raw).toBeUndefined();
    expect(passed.slice(0, -1).every((p) => p.raw === '{}')).toBe(true);
    expect(guard.completionTokens()).toBe(5);
  });

  it('a stream that ends within its grant is not cut', () => {
    const guard = new GrantGuard(5, 1);
    for (const it of [item(' go'), item(' go'), item(' go', 'stop')]) expect(guard.pass(it)).toBe(true);
    expect(guard.cut).toBe(false);
    expect(guard.done).toBe(true);
  });
});
