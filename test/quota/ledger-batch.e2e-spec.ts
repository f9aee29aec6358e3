import { randomUUID } from 'node:crypto';
import { LedgerRecord, LedgerRepository } from '@app/quota';
import { createDatabase } from '../harness/app';
import { Instance, insertKey, insertTenant, insertUser, sql, startInstance } from './harness';

/**
 * The ledger's batch insert (one statement: unnest of one array per column) against a real PostgreSQL:
 * every column as the record says, defaults for what older records lack, exact costs, each id
 * once, and the keys' usage and spend raised by exactly the rows that were new.
 */
describe('ledger batch insert', () => {
  let db: string;
  let t: Instance;
  let repo: LedgerRepository;
  let tenantId: string;
  let userId: string;
  let keyId: string;

  beforeAll(async () => {
    db = await createDatabase();
    t = await startInstance({ databaseUrl: db });
    repo = t.app.get(LedgerRepository);
    tenantId = await insertTenant(db);
    userId = await insertUser(db, tenantId);
    keyId = await insertKey(db, tenantId, userId);
  });
  afterAll(() => t.close());

  const record = (o: Partial<LedgerRecord> = {}): LedgerRecord => ({
    id: randomUUID(),
    requestId: 'req-1',
    tenantId,
    userId,
    apiKeyId: keyId,
    model: 'gpt-fake',
    provider: 'openai',
    promptTokens: 21,
    completionTokens: 9,
    cacheWriteTokens: 4,
    cacheReadTokens: 3,
    costMicros: 123,
    status: 'success',
    latencyMs: 17,
    deployment: 'east',
    attempts: 2,
    createdAt: new Date('2026-11-30T04:05:06.789Z'),
    ...o,
  });

  it('writes each field, fills what an older record lacks, and inserts an id once', async () => {
    const full = record({ requestId: 'quote " backslash \\ tab \t ünïcode ✓', costMicros: 1_500_000_123 });
    const sparse = record({ userId: null, requestId: null, latencyMs: null, deployment: null, attempts: 0 });
    // an older record: no cache fields, no attempts, no deployment
    const old = record();
    const legacy = JSON.parse(JSON.stringify(old)) as Record<string, unknown>;
    delete legacy.cacheWriteTokens;
    delete legacy.cacheReadTokens;
    delete legacy.attempts;
    delete legacy.deployment;
    const rows = [full, sparse, { ...legacy, createdAt: old.createdAt } as unknown as LedgerRecord];
    const [before] = await sql<{ q: string; spend: string }>(
      db,
      'SELECT current_quota_usage::text AS q, spend::text AS spend FROM api_keys WHERE id = $1',
      [keyId],
    );

    expect(await repo.insertBatch(rows)).toBe(3);
    expect(await repo.insertBatch([rows[0], record({ id: rows[1].id })])).toBe(0); // both ids are there

    const got = await sql(
      db,
      `SELECT id, request_id, tenant_id, user_id, api_key_id, model, provider, prompt_tokens, completion_tokens,
              cost::text AS cost, status, latency_ms, created_at, deployment, attempts, cache_write_tokens,
              cache_read_tokens
         FROM usage_records WHERE id = ANY($1) ORDER BY cost DESC, attempts DESC`,
      [rows.map((r) => r.id)],
    );
    const common = {
      tenant_id: tenantId,
      api_key_id: keyId,
      model: 'gpt-fake',
      provider: 'openai',
      prompt_tokens: 21,
      completion_tokens: 9,
      status: 'success',
      created_at: new Date('2026-11-30T04:05:06.789Z'),
    };
    expect(got).toEqual([
      {
        ...common,
        id: full.id,
        request_id: full.requestId,
        user_id: userId,
        cost: '1500.000123',
        latency_ms: 17,
        deployment: 'east',
        attempts: 2,
        cache_write_tokens: 4,
        cache_read_tokens: 3,
      },
      {
        ...common,
        id: old.id,
        request_id: 'req-1',
        user_id: userId,
        cost: '0.000123',
        latency_ms: 17,
        deployment: null,
        attempts: 1,
        cache_write_tokens: 0,
        cache_read_tokens: 0,
      },
      {
        ...common,
        id: sparse.id,
        request_id: null,
        user_id: null,
        cost: '0.000123',
        latency_ms: null,
        deployment: null,
        attempts: 0,
        cache_write_tokens: 4,
        cache_read_tokens: 3,
      },
    ]);
    const [after] = await sql<{ q: string; spend: string }>(
      db,
      'SELECT current_quota_usage::text AS q, spend::text AS spend FROM api_keys WHERE id = $1',
      [keyId],
    );
    expect(BigInt(after.q) - BigInt(before.q)).toBe(90n); // 3 rows of 30 tokens, each once
    expect(Number(after.spend) - Number(before.spend)).toBeCloseTo(1500.000369, 6);
  });

  it('refuses a batch with a row PostgreSQL cannot store, as a data error (the queue isolates that row)', async () => {
    const bad = record({ promptTokens: 1.5 });
    await expect(repo.insertBatch([record(), bad])).rejects.toMatchObject({
      code: expect.stringMatching(/^22/),
    });
  });
});
