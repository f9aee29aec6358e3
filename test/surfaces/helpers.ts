import request from 'supertest';
import { auth, TenantSession } from '../harness/factories';
import { withClient } from '../harness/servers';

export interface LedgerRow {
  model: string;
  provider: string;
  prompt_tokens: number;
  completion_tokens: number;
  cost_micros: number;
  status: string;
  created_at: Date;
}

/** A key of the tenant, made by its admin. */
export async function createKey(
  url: string,
  tenant: TenantSession,
  body: Record<string, unknown> = {},
): Promise<{ id: string; key: string; scopes: string[] | null }> {
  const res = await request(url)
    .post('/api/v1/api-keys')
    .set(auth(tenant.admin.token))
    .send({ name: 'k', ...body })
    .expect(201);
  return res.body;
}

/**
 * A key's ledger rows, oldest first, once at least `n` are written (the ledger is batched);
 * then a short wait shows that no more arrive (charged once).
 */
export async function ledgerRows(databaseUrl: string, keyId: string, n: number): Promise<LedgerRow[]> {
  for (let i = 0; ; i++) {
    const rows = await withClient(databaseUrl, async (c) =>
      (
        await c.query(
          `SELECT model, provider, prompt_tokens, completion_tokens,
                  round(cost * 1000000)::int AS cost_micros, status, created_at
             FROM usage_records WHERE api_key_id = $1 ORDER BY created_at, id`,
          [keyId],
        )
      ).rows.map((r) => ({
        ...r,
        prompt_tokens: Number(r.prompt_tokens),
        completion_tokens: Number(r.completion_tokens),
      })),
    );
    if (rows.length >= n || i > 200) {
      await new Promise((r) => setTimeout(r, 60));
      return rows as LedgerRow[];
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
