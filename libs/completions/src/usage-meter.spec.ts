import { ApiError } from '@app/observability';
import type { CompletionCaller } from './usage-meter';
import { NoopUsageMeter } from './usage-meter';

const caller = (allowedModels: string[] | null) =>
  ({ tenantId: 't', apiKeyId: 'k', allowedModels }) as CompletionCaller;
const estimate = {
  model: 'mock-gpt',
  promptTokens: 10,
  wanted: 50,
  maxOutputTokens: null,
  choices: 1,
  pricing: { inputPerMillion: 1, outputPerMillion: 1 },
};

describe('NoopUsageMeter', () => {
  const meter = new NoopUsageMeter();

  it('admits any model when the key allows all, with no headers, granting what was wanted', () => {
    const admitted = { reservation: null, headers: {}, grantedCompletionTokens: 50 };
    expect(meter.admit(caller(null), estimate)).toEqual(admitted);
    expect(meter.admit(caller(['mock-gpt']), estimate)).toEqual(admitted);
    expect(meter.admit(caller(null), { ...estimate, maxOutputTokens: 20 }).grantedCompletionTokens).toBe(20);
    expect(meter.admit(caller(null), { ...estimate, wanted: null }).grantedCompletionTokens).toBe(4096);
  });

  it('still refuses a model the key may not use (403 model_not_allowed)', () => {
    try {
      meter.admit(caller(['other']), estimate);
      throw new Error('expected 403');
    } catch (e) {
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).getStatus()).toBe(403);
      expect((e as ApiError).code).toBe('model_not_allowed');
    }
  });
});
