import { Logger } from '@nestjs/common';
import { MemoryQuotaStore } from './memory-quota.store';

const T = '11111111-1111-4111-8111-111111111111';

describe('rpm Retry-After', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('never exceeds the window when a request was logged with a later clock (another instance)', async () => {
    const store = new MemoryQuotaStore();
    const rpm = { key: `rpm:{${T}}:k`, limit: 1, windowMs: 60_000 };
    const base = { tenantId: T, ttlMs: 1000, tokens: 1, costMicros: 0, levels: [], rpm };
    const t0 = Date.now();
    // instance 1 logs at t0 + 30 ms; instance 2's request, stamped t0, reaches the store after it
    expect((await store.reserve({ ...base, reservationId: 'a', now: t0 + 30 })).ok).toBe(true);
    const r = await store.reserve({ ...base, reservationId: 'b', now: t0 });
    expect(r).toMatchObject({ ok: false, reason: 'rpm', rpm: { resetMs: 60_000 } });
  });
});
