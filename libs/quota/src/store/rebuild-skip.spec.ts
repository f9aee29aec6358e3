import { MemoryQuotaStore } from './memory-quota.store';

const T = '11111111-1111-4111-8111-111111111111';
const entry = { key: `quota:{${T}}`, value: 10, expireAt: null };

describe('rebuild: skipping a tenant rebuilt since (no second overwrite under load)', () => {
  it('unlessRebuiltSince skips a tenant marked at or after that time, and rebuilds one marked before', async () => {
    const store = new MemoryQuotaStore();
    expect(await store.rebuild(T, [entry], 1000, { markTenant: true })).toEqual([
      { key: entry.key, before: 0, after: 10 },
    ]);
    const later = { ...entry, value: 99 };
    expect(await store.rebuild(T, [later], 2000, { unlessRebuiltSince: 1000 })).toEqual([
      { key: entry.key, before: 10, after: 10 },
    ]);
    expect(await store.rebuild(T, [later], 2000, { unlessRebuiltSince: 1001 })).toEqual([
      { key: entry.key, before: 10, after: 99 },
    ]);
  });
});
