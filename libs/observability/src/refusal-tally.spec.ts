import { MAX_TALLY_ENTRIES, RefusalTally } from './refusal-tally';

describe('RefusalTally', () => {
  const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

  it('counts per tenant, minute and reason; drain empties it', () => {
    const t = new RefusalTally();
    t.count('a', 'rpm', T0);
    t.count('a', 'rpm', T0 + 59_000);
    t.count('a', 'rpm', T0 + 60_000);
    t.count('a', 'budget', T0);
    t.count('b', 'rpm', T0);
    const minute = T0 / 60_000;
    expect(
      t
        .drain()
        .sort((x, y) => (x.tenantId + x.minute + x.reason).localeCompare(y.tenantId + y.minute + y.reason)),
    ).toEqual([
      { tenantId: 'a', minute, reason: 'budget', count: 1 },
      { tenantId: 'a', minute, reason: 'rpm', count: 2 },
      { tenantId: 'a', minute: minute + 1, reason: 'rpm', count: 1 },
      { tenantId: 'b', minute, reason: 'rpm', count: 1 },
    ]);
    expect(t.drain()).toEqual([]);
  });

  it('restore merges a failed write back into what was counted since', () => {
    const t = new RefusalTally();
    t.count('a', 'tpm', T0);
    const drained = t.drain();
    t.count('a', 'tpm', T0);
    t.restore(drained);
    expect(t.drain()).toEqual([{ tenantId: 'a', minute: T0 / 60_000, reason: 'tpm', count: 2 }]);
  });

  it('is bounded: past MAX_TALLY_ENTRIES new entries are dropped and counted', () => {
    const t = new RefusalTally();
    for (let i = 0; i < MAX_TALLY_ENTRIES + 3; i++) t.count(`t${i}`, 'rpm', T0);
    t.count('t0', 'rpm', T0); // an existing entry still counts
    expect(t.size).toBe(MAX_TALLY_ENTRIES);
    expect(t.dropped).toBe(3);
    expect(t.drain().find((e) => e.tenantId === 't0')?.count).toBe(2);
  });
});
