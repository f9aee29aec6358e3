import { randomUUID } from 'node:crypto';
import { expiriesKey, levelRef, PERIOD_GRACE_MS, reservationsKey, rpmKey, subjectLevels } from './keys';
import type { QuotaSubject } from './quota.types';

const T = '11111111-1111-4111-8111-111111111111';
const U = '22222222-2222-4222-8222-222222222222';
const K = '33333333-3333-4333-8333-333333333333';
const none = { tokenLimit: null, budgetUsd: null, period: 'none' as const };
const now = Date.parse('2026-11-22T10:00:00Z');

describe('quota key names', () => {
  it('follow the design: hash tag per tenant, user and key segments, plain period suffix', () => {
    const s: QuotaSubject = {
      tenantId: T,
      userId: U,
      apiKeyId: K,
      rateLimitRpm: null,
      allowedModels: null,
      limits: { tenant: { ...none, period: 'monthly' }, user: none, key: { ...none, period: 'daily' } },
    };
    const [key, user, tenant] = subjectLevels(s, now, 'UTC');
    expect(key).toMatchObject({ level: 'key', id: K, tokensKey: `quota:{${T}}:key:${K}:2026-11-22` });
    expect(key.spendKey).toBe(`spend:{${T}}:key:${K}:2026-11-22`);
    // named by what never changes: the owner is not in a key's counter name
    expect(key.tokensKey).not.toContain(U);
    expect(subjectLevels({ ...s, userId: randomUUID() }, now, 'UTC')[0].tokensKey).toBe(key.tokensKey);
    expect(key.expireAt).toBe(Date.parse('2026-11-23T00:00:00Z') + PERIOD_GRACE_MS);
    expect(user).toMatchObject({ level: 'user', id: U, tokensKey: `quota:{${T}}:${U}`, expireAt: null });
    expect(tenant).toMatchObject({ level: 'tenant', id: T, tokensKey: `quota:{${T}}:2026-11` });
    expect(rpmKey(T, K)).toBe(`rpm:{${T}}:${K}`);
    expect(reservationsKey(T)).toBe(`qresv:{${T}}`);
    expect(expiriesKey(T)).toBe(`qresv:{${T}}:exp`);
  });

  it('a legacy key without owner: no user level; its counters keep their name when it gets one', () => {
    const s: QuotaSubject = {
      tenantId: T,
      userId: null,
      apiKeyId: K,
      rateLimitRpm: null,
      allowedModels: null,
      limits: { tenant: none, user: null, key: none },
    };
    const refs = subjectLevels(s, now, 'UTC');
    expect(refs.map((r) => r.level)).toEqual(['key', 'tenant']);
    expect(refs[0].tokensKey).toBe(`quota:{${T}}:key:${K}`);
  });

  it('refuses ids that would break the hash tag or the layout', () => {
    expect(() =>
      levelRef('tenant', { tenantId: 'a}b', userId: null, apiKeyId: K }, none, now, 'UTC'),
    ).toThrow();
    expect(() => levelRef('user', { tenantId: T, userId: 'x:y', apiKeyId: K }, none, now, 'UTC')).toThrow();
    expect(() => rpmKey(T, '{k}')).toThrow();
  });
});
