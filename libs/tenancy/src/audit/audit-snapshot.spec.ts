import { changedFields, cleanSnapshot } from './audit-snapshot';

describe('audit snapshots', () => {
  it('drops secrets at any depth and keeps the rest', () => {
    expect(
      cleanSnapshot({
        id: 'k1',
        key: 'sk-secret',
        key_prefix: 'sk-abcdefghi',
        key_hash: '$2b$...',
        keyLookupHash: 'abc',
        password: 'pw',
        nested: { access_token: 'jwt', name: 'n' },
        allowed_models: ['a'],
      }),
    ).toEqual({ id: 'k1', key_prefix: 'sk-abcdefghi', nested: { name: 'n' }, allowed_models: ['a'] });
  });

  it('keeps only the changed fields, ignoring updated_at and usage counters', () => {
    expect(
      changedFields(
        { name: 'a', quota_limit: 10, updated_at: 'x', spend: 1, allowed_models: ['m'] },
        { name: 'a', quota_limit: 20, updated_at: 'y', spend: 2, allowed_models: ['m', 'n'] },
      ),
    ).toEqual({
      before: { quota_limit: 10, allowed_models: ['m'] },
      after: { quota_limit: 20, allowed_models: ['m', 'n'] },
    });
  });
});
