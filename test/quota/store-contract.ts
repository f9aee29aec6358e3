import { randomUUID } from 'node:crypto';
import {
  levelRef,
  QuotaStore,
  ReserveLevel,
  ReserveRequest,
  rpmKey,
  tpmKey,
  TPM_RETRY_SCAN,
} from '@app/quota';
import type { QuotaLevel, QuotaPeriod } from '@app/quota';

/**
 * The QuotaStore contract, run against RedisQuotaStore and MemoryQuotaStore
 * (store-contract.e2e-spec.ts). Times are near the real clock: Redis expires keys by
 * wall time.
 */
export function storeContract(getStore: () => QuotaStore): void {
  let store: QuotaStore;
  let T: string;
  let U: string;
  let K: string;
  let t0: number;
  beforeEach(() => {
    store = getStore();
    T = randomUUID();
    U = randomUUID();
    K = randomUUID();
    t0 = Date.now();
  });

  const level = (
    l: QuotaLevel,
    tokenLimit: number | null = null,
    spendLimitMicros: number | null = null,
    period: QuotaPeriod = 'none',
    now = t0,
  ): ReserveLevel => ({
    ...levelRef(l, { tenantId: T, userId: U, apiKeyId: K }, { period }, now, 'UTC'),
    tokenLimit,
    spendLimitMicros,
  });
  const levels3 = (key: number | null = null, user: number | null = null, tenant: number | null = null) => [
    level('key', key),
    level('user', user),
    level('tenant', tenant),
  ];
  const req = (over: Partial<ReserveRequest> = {}): ReserveRequest => ({
    tenantId: T,
    reservationId: randomUUID(),
    now: t0,
    ttlMs: 60_000,
    tokens: 10,
    costMicros: 5,
    levels: levels3(),
    ...over,
  });
  const ref = (r: ReserveRequest) => ({
    tenantId: T,
    reservationId: r.reservationId,
    levels: r.levels,
    tpm: (r.tpm ?? []).map((w) => w.key),
  });
  const values = (r: ReserveRequest, now = t0) =>
    store.read(
      T,
      r.levels.flatMap((l) => [l.tokensKey, l.spendKey]),
      now,
    );

  it('reserve adds tokens and cost at every level, limited or not', async () => {
    const r = req({ tokens: 7, costMicros: 3 });
    const res = await store.reserve(r);
    expect(res).toEqual({
      ok: true,
      usage: [
        { tokens: 7, spendMicros: 3 },
        { tokens: 7, spendMicros: 3 },
        { tokens: 7, spendMicros: 3 },
      ],
      rpm: null,
      granted: 0,
      tokens: 7,
      costMicros: 3,
      tpm: [],
    });
    expect(await values(r)).toEqual([7, 3, 7, 3, 7, 3]);
    expect(await store.pending(T, t0)).toBe(1);
  });

  it('the allowance: grants min(wanted, the least room per choice, in tokens and spend) and reserves it', async () => {
    const completion = { wanted: 1000, choices: 1, microsPerToken: 0, min: 16 };
    // unlimited: the whole of wanted
    const r0 = req({ tokens: 100, costMicros: 0, completion });
    expect(await store.reserve(r0)).toMatchObject({ ok: true, granted: 1000, tokens: 1100 });
    await store.release(ref(r0), t0);
    // the user level has 600 left: 500 after the prompt
    const lv = levels3(5000, 600, null);
    const r1 = req({ tokens: 100, costMicros: 0, levels: lv, completion });
    expect(await store.reserve(r1)).toMatchObject({ ok: true, granted: 500, tokens: 600 });
    expect(await values(r1)).toEqual([600, 0, 600, 0, 600, 0]);
    await store.release(ref(r1), t0);
    // two choices share the room: (600 - 100) / 2
    const r2 = req({ tokens: 100, costMicros: 0, levels: lv, completion: { ...completion, choices: 2 } });
    expect(await store.reserve(r2)).toMatchObject({ ok: true, granted: 250, tokens: 600 });
    await store.release(ref(r2), t0);
    // spend: 10,000 micro-dollars, prompt 1,000, output 3 per token -> 3,000 tokens, 9,000 micro-dollars
    const spend = [level('key', null, 10_000), level('user'), level('tenant')];
    const c3 = { wanted: 5000, choices: 1, microsPerToken: 3, min: 16 };
    const r3 = req({ tokens: 10, costMicros: 1000, levels: spend, completion: c3 });
    expect(await store.reserve(r3)).toMatchObject({
      ok: true,
      granted: 3000,
      tokens: 3010,
      costMicros: 10_000,
    });
    await store.release(ref(r3), t0);
    // a fractional price is rounded up, never past the budget: 9,000 / 0.7 = 12,857.1 -> 12,857 tokens
    const r4 = req({
      tokens: 10,
      costMicros: 1000,
      levels: spend,
      completion: { ...c3, wanted: 20_000, microsPerToken: 0.7 },
    });
    expect(await store.reserve(r4)).toMatchObject({ ok: true, granted: 12_857, costMicros: 10_000 });
  });

  it('the allowance refuses when the prompt alone does not fit, or the grant is below min(wanted, min)', async () => {
    const lv = levels3(null, 130, null);
    const completion = { wanted: 1000, choices: 1, microsPerToken: 0, min: 16 };
    expect(await store.reserve(req({ tokens: 131, costMicros: 0, levels: lv, completion }))).toMatchObject({
      ok: false,
      reason: 'tokens',
      levelIndex: 1,
      limit: 130,
    });
    // 130 - 120 = 10 left: below 16
    const r = req({ tokens: 120, costMicros: 0, levels: lv, completion });
    expect(await store.reserve(r)).toMatchObject({ ok: false, reason: 'tokens', levelIndex: 1 });
    expect(await values(r)).toEqual([0, 0, 0, 0, 0, 0]);
    // a client that wants 10 or fewer is served
    expect(
      await store.reserve(
        req({ tokens: 120, costMicros: 0, levels: lv, completion: { ...completion, wanted: 10 } }),
      ),
    ).toMatchObject({ ok: true, granted: 10, tokens: 130 });
  });

  it('reserve is idempotent per reservation id: run twice, it counts once and answers the same grant', async () => {
    const lv = levels3(null, 1000, null);
    const r = req({
      tokens: 100,
      costMicros: 7,
      levels: lv,
      completion: { wanted: 2000, choices: 1, microsPerToken: 0, min: 16 },
      rpm: { key: rpmKey(T, K), limit: 5, windowMs: 60_000 },
    });
    const first = await store.reserve(r);
    const again = await store.reserve(r);
    expect(first).toMatchObject({ ok: true, granted: 900, tokens: 1000, costMicros: 7 });
    expect(again).toMatchObject({ ok: true, granted: 900, tokens: 1000, costMicros: 7 });
    expect(await values(r)).toEqual([1000, 7, 1000, 7, 1000, 7]);
    expect(await store.pending(T, t0)).toBe(1);
    expect(again.ok && again.rpm?.count).toBe(1);
  });

  it('a limit can be reached exactly; one more token is refused, naming the level; nothing is written', async () => {
    const lv = levels3(null, 100, null);
    expect((await store.reserve(req({ tokens: 60, levels: lv }))).ok).toBe(true);
    expect((await store.reserve(req({ tokens: 40, levels: lv }))).ok).toBe(true);
    const r = req({ tokens: 1, levels: lv });
    const res = await store.reserve(r);
    expect(res).toMatchObject({ ok: false, reason: 'tokens', levelIndex: 1, limit: 100 });
    expect(await values(r)).toEqual([100, 10, 100, 10, 100, 10]);
    expect(await store.pending(T, t0)).toBe(2);
  });

  it('budget refusal in micro-dollars', async () => {
    const lv = [level('key'), level('user'), level('tenant', null, 1000)];
    expect((await store.reserve(req({ costMicros: 600, levels: lv }))).ok).toBe(true);
    const res = await store.reserve(req({ costMicros: 401, levels: lv }));
    expect(res).toMatchObject({ ok: false, reason: 'budget', levelIndex: 2, limit: 1000 });
    if (!res.ok && res.reason === 'budget') expect(res.usage[2].spendMicros).toBe(600);
  });

  it('levels are checked in the given order (the first that would exceed is named)', async () => {
    const res = await store.reserve(req({ tokens: 50, levels: levels3(10, null, 10) }));
    expect(res).toMatchObject({ ok: false, reason: 'tokens', levelIndex: 0 });
  });

  it('settle replaces the reserved amounts by the actual ones', async () => {
    const r = req({ tokens: 100, costMicros: 50 });
    await store.reserve(r);
    const s = await store.settle(ref(r), 30, 20, t0 + 5);
    expect(s.late).toBe(false);
    expect(s.usage).toEqual([
      { tokens: 30, spendMicros: 20 },
      { tokens: 30, spendMicros: 20 },
      { tokens: 30, spendMicros: 20 },
    ]);
    expect(await store.pending(T, t0)).toBe(0);
    // more than reserved is charged too (the provider already spent it)
    const r2 = req({ tokens: 10, costMicros: 1 });
    await store.reserve(r2);
    await store.settle(ref(r2), 25, 4, t0 + 6);
    expect(await values(r2)).toEqual([55, 24, 55, 24, 55, 24]);
  });

  it('release gives everything back, once', async () => {
    const r = req({ tokens: 100, costMicros: 50 });
    await store.reserve(r);
    expect(await store.release(ref(r), t0)).toBe('released');
    expect(await store.release(ref(r), t0)).toBe('duplicate');
    expect(await values(r)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('exactly once: the same settle run twice (a resent command) counts once; settle or release after either is a no-op', async () => {
    const r = req({ tokens: 100, costMicros: 50 });
    await store.reserve(r);
    const first = await store.settle(ref(r), 30, 20, t0 + 5);
    const again = await store.settle(ref(r), 30, 20, t0 + 6);
    expect([first.duplicate, again.duplicate, again.late]).toEqual([false, true, false]);
    expect(again.usage).toEqual(first.usage);
    expect(await values(r)).toEqual([30, 20, 30, 20, 30, 20]);
    expect(await store.release(ref(r), t0 + 7)).toBe('duplicate');
    expect(await values(r)).toEqual([30, 20, 30, 20, 30, 20]);
    // a released reservation settled later (late resend after the release): nothing added
    const r2 = req({ tokens: 10, costMicros: 1 });
    await store.reserve(r2);
    expect(await store.release(ref(r2), t0)).toBe('released');
    expect((await store.settle(ref(r2), 10, 1, t0)).duplicate).toBe(true);
    expect(await values(r2)).toEqual([30, 20, 30, 20, 30, 20]);
    // the marker is kept markerTtlMs: a settle of the same id after that counts (late) again
    const r3 = req({ tokens: 5, costMicros: 0 });
    await store.reserve(r3);
    await store.settle(ref(r3), 5, 0, t0, { markerTtlMs: 100 });
    expect((await store.settle(ref(r3), 5, 0, t0 + 50, { markerTtlMs: 100 })).duplicate).toBe(true);
    expect((await store.settle(ref(r3), 5, 0, t0 + 200, { markerTtlMs: 100 })).late).toBe(true);
  });

  it('an expired reservation is released by the next operation of the tenant', async () => {
    const lv = levels3(100);
    const r = req({ tokens: 100, ttlMs: 1000, levels: lv });
    await store.reserve(r);
    expect((await store.reserve(req({ tokens: 1, levels: lv, now: t0 + 999 }))).ok).toBe(false);
    expect((await store.reserve(req({ tokens: 100, levels: lv, now: t0 + 1000 }))).ok).toBe(true);
    expect(await store.pending(T, t0 + 1000)).toBe(1);
  });

  it('expiry order, not arrival order: a reservation that expires first is released first', async () => {
    const lv = levels3(100);
    // made in this order, they expire in the other (a longer TTL, then a clock behind)
    const later = req({ tokens: 30, ttlMs: 5000, levels: lv });
    const sooner = req({ tokens: 40, ttlMs: 1000, levels: lv, now: t0 - 10 });
    const last = req({ tokens: 20, ttlMs: 2000, levels: lv });
    for (const r of [later, sooner, last]) expect((await store.reserve(r)).ok).toBe(true);
    expect(await store.pending(T, t0 + 1000)).toBe(2);
    expect(await values(later, t0 + 1000)).toEqual([50, 10, 50, 10, 50, 10]);
    expect(await store.pending(T, t0 + 2000)).toBe(1);
    expect(await values(later, t0 + 2000)).toEqual([30, 5, 30, 5, 30, 5]);
    expect(await store.pending(T, t0 + 5000)).toBe(0);
  });

  it('a settle after expiry adds the actual amounts in full (late)', async () => {
    const r = req({ tokens: 100, costMicros: 9, ttlMs: 1000 });
    await store.reserve(r);
    const s = await store.settle(ref(r), 40, 3, t0 + 5000);
    expect(s.late).toBe(true);
    expect(await values(r, t0 + 5000)).toEqual([40, 3, 40, 3, 40, 3]);
  });

  it('another tenant is not affected', async () => {
    const lv = levels3(10);
    await store.reserve(req({ tokens: 10, levels: lv }));
    const other = randomUUID();
    const lvOther = [
      {
        ...levelRef('key', { tenantId: other, userId: U, apiKeyId: K }, { period: 'none' }, t0, 'UTC'),
        tokenLimit: 10,
        spendLimitMicros: null,
      },
    ];
    expect((await store.reserve({ ...req({ tokens: 10 }), tenantId: other, levels: lvOther })).ok).toBe(true);
  });

  describe('rate limit: sliding log of 60 s', () => {
    const rpm = () => ({ key: rpmKey(T, K), limit: 3, windowMs: 60_000 });

    it('admits `limit` requests in any window, refuses the next with the time until a slot frees', async () => {
      const at = (dt: number) => store.reserve(req({ now: t0 + dt, rpm: rpm() }));
      expect(await at(0)).toMatchObject({ ok: true, rpm: { limit: 3, count: 1, resetMs: 60_000 } });
      expect(await at(10_000)).toMatchObject({ ok: true, rpm: { count: 2, resetMs: 50_000 } });
      expect(await at(20_000)).toMatchObject({ ok: true, rpm: { count: 3, resetMs: 40_000 } });
      expect(await at(30_000)).toEqual({
        ok: false,
        reason: 'rpm',
        rpm: { limit: 3, count: 3, resetMs: 30_000 },
      });
      expect(await at(59_999)).toMatchObject({ ok: false, reason: 'rpm' });
      // the request of t0 leaves the window at t0 + 60 s
      expect(await at(60_000)).toMatchObject({ ok: true, rpm: { count: 3, resetMs: 10_000 } });
    });

    it('refused requests do not use up the window, and hold no quota', async () => {
      const lv = levels3(15);
      expect((await store.reserve(req({ tokens: 10, levels: lv, rpm: rpm() }))).ok).toBe(true);
      expect(await store.reserve(req({ tokens: 10, levels: lv, rpm: rpm() }))).toMatchObject({
        ok: false,
        reason: 'tokens',
        rpm: { count: 1 },
      });
      expect(await store.reserve(req({ tokens: 1, levels: lv, rpm: rpm() }))).toMatchObject({
        ok: true,
        rpm: { count: 2 },
      });
    });
  });

  describe('tokens per minute: a sliding window of the tokens reservations hold', () => {
    const win = (limit: number, l: QuotaLevel = 'key') => ({
      level: l,
      key: tpmKey(l, T, l === 'key' ? K : l === 'user' ? U : T),
      limit,
      windowMs: 60_000,
    });
    const at = (dt: number, over: Partial<ReserveRequest> = {}) =>
      req({ now: t0 + dt, tokens: 30, costMicros: 0, tpm: [win(100)], ...over });

    it('admits up to the limit in any window; refuses with the time until enough leaves; nothing written', async () => {
      expect(await store.reserve(at(0))).toMatchObject({
        ok: true,
        tpm: [{ limit: 100, used: 30, resetMs: 60_000 }],
      });
      expect(await store.reserve(at(10_000))).toMatchObject({
        ok: true,
        tpm: [{ used: 60, resetMs: 50_000 }],
      });
      expect(await store.reserve(at(20_000))).toMatchObject({ ok: true, tpm: [{ used: 90 }] });
      const refused = await store.reserve(at(30_000));
      // 90 + 30 - 100 = 20 must leave: the entry of t0 (30 tokens) does at t0 + 60 s
      expect(refused).toMatchObject({ ok: false, reason: 'tpm', windowIndex: 0, retryMs: 30_000 });
      expect(refused).toMatchObject({ tpm: [{ limit: 100, used: 90 }] });
      expect(await store.pending(T, t0 + 30_000)).toBe(3);
      // the entry of t0 leaves the window at t0 + 60 s
      expect(await store.reserve(at(60_000))).toMatchObject({
        ok: true,
        tpm: [{ used: 90, resetMs: 10_000 }],
      });
    });

    it('limits the grant like a token quota (after the quota levels); below min(wanted, min) refused', async () => {
      const completion = { wanted: 1000, choices: 2, microsPerToken: 0, min: 16 };
      const a = await store.reserve(at(0, { tokens: 20, completion }));
      expect(a).toMatchObject({ ok: true, granted: 40, tokens: 100, tpm: [{ used: 100 }] });
      // a quota refusal is named before the window's
      expect(await store.reserve(at(1, { levels: levels3(10), completion }))).toMatchObject({
        ok: false,
        reason: 'tokens',
      });
      expect(await store.reserve(at(2, { tokens: 1, completion }))).toMatchObject({
        ok: false,
        reason: 'tpm',
        retryMs: 59_998,
      });
    });

    it(`the retry time reads at most the window's ${TPM_RETRY_SCAN} oldest entries; past them it is a lower bound`, async () => {
      const size = TPM_RETRY_SCAN + 44;
      for (let i = 0; i < size; i++)
        expect(await store.reserve(at(i, { tokens: 1, tpm: [win(size)] }))).toMatchObject({ ok: true });
      const refusal = (tokens: number) => store.reserve(at(1000, { tokens, tpm: [win(size)] }));
      // 10 tokens must leave: the 10th entry (at t0 + 9) leaves at t0 + 60,009
      expect(await refusal(10)).toMatchObject({ ok: false, reason: 'tpm', retryMs: 59_009 });
      // exactly the last entry read
      expect(await refusal(TPM_RETRY_SCAN)).toMatchObject({ retryMs: 60_000 + TPM_RETRY_SCAN - 1 - 1000 });
      // more than those entries hold: until the last of them leaves (the exact time would be later)
      expect(await refusal(TPM_RETRY_SCAN + 20)).toMatchObject({
        reason: 'tpm',
        retryMs: 60_000 + TPM_RETRY_SCAN - 1 - 1000,
      });
      // more than the window holds: never
      expect(await refusal(size + 1)).toMatchObject({ reason: 'tpm', retryMs: null });
    });

    it('a request that can never fit: no retry time', async () => {
      expect(await store.reserve(at(0, { tokens: 101 }))).toMatchObject({
        ok: false,
        reason: 'tpm',
        retryMs: null,
      });
    });

    it('settle corrects the entry to the actual tokens, release removes it; the window follows', async () => {
      const completion = { wanted: 1000, choices: 1, microsPerToken: 0, min: 16 };
      const r1 = at(0, { tokens: 20, completion });
      expect(await store.reserve(r1)).toMatchObject({ ok: true, granted: 80, tpm: [{ used: 100 }] });
      await store.settle(ref(r1), 35, 0, t0 + 1000);
      const r2 = at(2000, { tokens: 20, completion });
      expect(await store.reserve(r2)).toMatchObject({ ok: true, granted: 45, tpm: [{ used: 100 }] });
      expect(await store.release(ref(r2), t0 + 3000)).toBe('released');
      // a settle resent after the release changes nothing
      await store.settle(ref(r2), 999, 0, t0 + 3500);
      expect(await store.reserve(at(4000, { tokens: 65 }))).toMatchObject({ ok: true, tpm: [{ used: 100 }] });
    });

    it('every level with a limit has its own window, checked in the given order', async () => {
      const windows = [win(1000, 'key'), win(50, 'user'), win(1000, 'tenant')];
      expect(await store.reserve(at(0, { tpm: windows }))).toMatchObject({
        ok: true,
        tpm: [{ used: 30 }, { used: 30 }, { used: 30 }],
      });
      expect(await store.reserve(at(1, { tpm: windows }))).toMatchObject({
        ok: false,
        reason: 'tpm',
        windowIndex: 1,
      });
      // another key of the same user shares the user's window
      const other = { ...win(1000, 'key'), key: tpmKey('key', T, randomUUID()) };
      expect(await store.reserve(at(2, { tpm: [other, windows[1]] }))).toMatchObject({
        ok: false,
        reason: 'tpm',
        windowIndex: 1,
      });
    });
  });

  it('counters of a reset period expire after their period (plus grace)', async () => {
    const now = Date.now();
    const lv = [{ ...level('key', 10, null, 'daily', now), expireAt: now + 300 }];
    const r = req({ now, tokens: 10, levels: lv });
    await store.reserve(r);
    await store.settle(ref(r), 10, 5, now);
    expect(await store.read(T, [lv[0].tokensKey], Date.now())).toEqual([10]);
    await new Promise((res) => setTimeout(res, 400));
    expect(await store.read(T, [lv[0].tokensKey], Date.now())).toEqual([0]);
  });

  it('rebuild sets ledger figures plus open reservations and reports before/after', async () => {
    const settled = req({ tokens: 50, costMicros: 5 });
    await store.reserve(settled);
    await store.settle(ref(settled), 50, 5, t0);
    const open = req({ tokens: 7, costMicros: 1 });
    await store.reserve(open);
    const [k, , t] = open.levels;
    const changes = await store.rebuild(
      T,
      [
        { key: k.tokensKey, value: 40, expireAt: null },
        { key: k.spendKey, value: 4, expireAt: null },
        { key: t.tokensKey, value: 0, expireAt: null },
      ],
      t0,
    );
    expect(changes).toEqual([
      { key: k.tokensKey, before: 57, after: 47 },
      { key: k.spendKey, before: 6, after: 5 },
      { key: t.tokensKey, before: 57, after: 7 },
    ]);
    await store.release(ref(open), t0);
    expect(await store.read(T, [k.tokensKey, t.tokensKey], t0)).toEqual([40, 0]);
  });

  it('500 concurrent reservations against a limit admitting 100: exactly 100 pass', async () => {
    const lv = levels3(1000);
    const results = await Promise.all(
      Array.from({ length: 500 }, () => store.reserve(req({ tokens: 10, levels: lv }))),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(100);
    expect(await store.read(T, [lv[0].tokensKey], t0)).toEqual([1000]);
  });

  it('the marker says whether counters were rebuilt', async () => {
    await store.markInitialized(t0);
    expect(await store.isInitialized()).toBe(true);
  });
}
