import { ApiError } from '@app/observability';
import type { CompletionCaller } from './usage-meter';
import { NoopUsageMeter } from './usage-meter';

const caller = (allowedModels: string[] | null) =>
  ({ tenantId: 't', apiKeyId: 'k', allowedModels }) as CompletionCaller;
const estimate = { model: 'mock-gpt', estimatedTokens: 10, estimatedCostMicros: 1 };

describe('NoopUsageMeter', () => {
  const meter = new NoopUsageMeter();

  it('admits any model when the key allows all, with no headers', () => {
    expect(meter.admit(caller(null), estimate)).toEqual({ reservation: null, headers: {} });
    expect(meter.admit(caller(['mock-gpt']), estimate)).toEqual({ reservation: null, headers: {} });
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
