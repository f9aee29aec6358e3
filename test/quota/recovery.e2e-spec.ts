import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@app/config';
import { dataSourceOptions, EmbeddedPostgres } from '@app/database';
import { ApiError, ReadinessRegistry } from '@app/observability';
import { levelRef, MARKER_KEY, QuotaSubject } from '@app/quota';
import { createDatabase, describeWithRedis } from '../harness/app';
import { dbUrl, startPostgres, startRedis, withClient } from '../harness/servers';
import {
  Instance,
  insertKey,
  insertTenant,
  insertUser,
  ledgerSums,
  sql,
  startInstance,
  subjectOf,
} from './harness';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const meta = { provider: 'fake', status: 'success' };

describeWithRedis('Redis flushed: counters rebuilt from the ledger exactly', () => {
  let proc: ChildProcess;
  let url: string;
  let db: string;
  let a: Instance;
  let b: Instance;
  let redis: Redis;

  beforeAll(async () => {
    // A private Redis: FLUSHALL must not touch the other suites' server.
    ({ proc, url } = await startRedis());
    db = await createDatabase();
    a = await startInstance({ databaseUrl: db, redisUrl: url });
    b = await startInstance({ databaseUrl: db, redisUrl: url });
    redis = new Redis(url);
  });
  afterAll(async () => {
    await redis.quit();
    await Promise.all([a.close(), b.close()]);
    proc.kill('SIGKILL');
  });

  it('rebuilds tenant, user and key counters (tokens and spend, periods none/daily/monthly) to the figures before the flush', async () => {
    const tenantId = await insertTenant(db, { quota_limit: 100_000, quota_period: 'monthly' });
    const users = [await insertUser(db, tenantId, { quota_period: 'daily' }), await insertUser(db, tenantId)];
    const subjects: QuotaSubject[] = [];
    for (const userId of users) {
      for (const period of ['none', 'daily'] as const) {
        const apiKeyId = await insertKey(db, tenantId, userId, { quota_limit: 5000, quota_period: period });
        subjects.push(
          subjectOf(
            { tenantId, userId, apiKeyId },
            {
              tenant: { tokenLimit: 100_000, budgetUsd: null, period: 'monthly' },
              user: { tokenLimit: null, budgetUsd: null, period: userId === users[0] ? 'daily' : 'none' },
              key: { tokenLimit: 5000, budgetUsd: null, period },
            },
          ),
        );
      }
    }
    // a legacy key without owner: no user level
    const legacy = await insertKey(db, tenantId, null);
    subjects.push(
      subjectOf(
        { tenantId, userId: null, apiKeyId: legacy },
        { tenant: { tokenLimit: 100_000, budgetUsd: null, period: 'monthly' } },
      ),
    );

    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const inst = i % 2 ? b : a;
        const { reservation } = await inst.quota.admit(subjects[i % subjects.length], {
          model: 'm',
          promptTokens: 100,
          wanted: 0,
          pricing: { inputPerMillion: 0.5, outputPerMillion: 0 }, // reserves 50 micro-dollars
        });
        await inst.quota.settle(
          reservation,
          { promptTokens: 20 + (i % 7), completionTokens: 10 + (i % 5), costMicros: 30 + (i % 3) },
          meta,
        );
      }),
    );
    await Promise.all([a.ledger.flush(), b.ledger.flush()]);

    const now = Date.now();
    const keys = new Set<string>();
    for (const s of subjects) {
      const levels = [
        levelRef('tenant', s, s.limits.tenant, now, 'UTC'),
        levelRef('key', s, s.limits.key, now, 'UTC'),
        ...(s.userId ? [levelRef('user', s, s.limits.user!, now, 'UTC')] : []),
      ];
      for (const l of levels) keys.add(l.tokensKey).add(l.spendKey);
    }
    const snapshot = new Map<string, string | null>();
    for (const k of keys) snapshot.set(k, await redis.get(k));
    expect([...snapshot.values()].every((v) => v !== null && Number(v) > 0)).toBe(true);
    const ledger = await ledgerSums(db, { tenantId });
    expect(Number(snapshot.get(`quota:{${tenantId}}:${new Date(now).toISOString().slice(0, 7)}`))).toBe(
      ledger.tokens,
    );

    await redis.flushall();
    expect(await redis.get(MARKER_KEY)).toBeNull();
    // The periodic check (every 30 s) finds the marker gone; here called directly.
    expect(await b.reconciliation.ensureInitialized('test')).toBe(true);
    for (const k of keys) expect([k, await redis.get(k)]).toEqual([k, snapshot.get(k)]);
    expect(await redis.get(MARKER_KEY)).not.toBeNull();
    expect(await a.reconciliation.ensureInitialized('test')).toBe(false);
  });

  it('rebuild(tenant) reports before/after per counter and keeps open reservations', async () => {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf(
      { tenantId, userId, apiKeyId },
      { key: { tokenLimit: 1000, budgetUsd: null, period: 'none' } },
    );
    const done = await a.quota.admit(s, { model: 'm', promptTokens: 300, wanted: 0 });
    await a.quota.settle(done.reservation, { promptTokens: 200, completionTokens: 0, costMicros: 0 }, meta);
    await a.quota.admit(s, { model: 'm', promptTokens: 500, wanted: 0 }); // open
    const keyCounter = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
    await redis.set(keyCounter, '0'); // a lost write
    await a.ledger.flush(); // rows still queued on another instance are not in the ledger yet
    const [report] = await b.reconciliation.rebuild(tenantId);
    expect(report.tenantId).toBe(tenantId);
    const key = report.counters.find((c) => c.level === 'key' && c.id === apiKeyId)!;
    expect(key.tokens).toEqual({ before: 0, after: 700 });
    expect(report.counters.find((c) => c.level === 'tenant')!.tokens).toEqual({ before: 700, after: 700 });
    // the limit holds again: 700 used or reserved, 300 left
    await expect(a.quota.admit(s, { model: 'm', promptTokens: 301, wanted: 0 })).rejects.toBeInstanceOf(
      ApiError,
    );
    await expect(a.quota.admit(s, { model: 'm', promptTokens: 300, wanted: 0 })).resolves.toBeDefined();
  });

  it('Redis down: closed answers 503, open serves; the missed counts come back from the ledger', async () => {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf({ tenantId, userId, apiKeyId });
    const { proc: p2, url: url2, port } = await startRedis();
    const closed = await startInstance({ databaseUrl: db, redisUrl: url2 });
    const open = await startInstance({ databaseUrl: db, redisUrl: url2, env: { QUOTA_FAIL_MODE: 'open' } });
    let shut = false;
    try {
      const before = await open.quota.admit(s, { model: 'm', promptTokens: 10, wanted: 0 });
      p2.kill('SIGKILL');
      await sleep(200);
      const e = await closed.quota
        .admit(s, { model: 'm', promptTokens: 10, wanted: 0 })
        .catch((x: ApiError) => x);
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).getStatus()).toBe(503);
      expect((e as ApiError).code).toBe('quota_unavailable');
      expect(closed.quota.storeFailures).toBeGreaterThan(0);
      const served = await open.quota.admit(s, { model: 'm', promptTokens: 10, wanted: 0 });
      expect(served.reservation.unchecked).toBe(true);
      await open.quota.settle(
        served.reservation,
        { promptTokens: 7, completionTokens: 0, costMicros: 0 },
        meta,
      );
      await open.quota.settle(
        before.reservation,
        { promptTokens: 5, completionTokens: 0, costMicros: 0 },
        meta,
      );
      expect(open.reconciliation.dirtyTenants).toContain(tenantId);
      // Redis comes back (empty, as after a restart without persistence)
      const back = await startRedis(port);
      try {
        const r2 = new Redis(back.url);
        await until(
          'the instance reconnects',
          async () => (await open.store.isInitialized().catch(() => null)) !== null,
        );
        await open.reconciliation.periodic();
        const key = levelRef('key', s, { period: 'none' }, Date.now(), 'UTC').tokensKey;
        expect(await r2.get(key)).toBe('12');
        expect(open.reconciliation.dirtyTenants).not.toContain(tenantId);
        await r2.quit();
      } finally {
        // Close while both are connected: ioredis cannot QUIT a server it is not connected to,
        // and would keep reconnecting (an open handle).
        await until('both instances reconnect', async () =>
          (
            await Promise.all(
              [closed, open].map((i) =>
                i.store.isInitialized().then(
                  () => true,
                  () => false,
                ),
              ),
            )
          ).every(Boolean),
        );
        await Promise.all([closed.close(), open.close()]);
        shut = true;
        back.proc.kill('SIGKILL');
      }
    } finally {
      if (!shut) await Promise.all([closed.close(), open.close()]);
      p2.kill('SIGKILL');
    }
  });

  it('Redis stalled (SIGSTOP, the connection open): closed answers 503 after REDIS_COMMAND_TIMEOUT_MS instead of waiting with it; served again once it resumes', async () => {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf({ tenantId, userId, apiKeyId });
    const { proc, url } = await startRedis();
    const bounded = await startInstance({
      databaseUrl: db,
      redisUrl: url,
      env: { REDIS_COMMAND_TIMEOUT_MS: '300' },
    });
    const unbounded = await startInstance({
      databaseUrl: db,
      redisUrl: url,
      env: { REDIS_COMMAND_TIMEOUT_MS: '0' },
    });
    const usage = { promptTokens: 10, completionTokens: 0, costMicros: 0 };
    const admit = (i: Instance) => i.quota.admit(s, { model: 'm', promptTokens: 10, wanted: 0 });
    try {
      for (const i of [bounded, unbounded]) await i.quota.settle((await admit(i)).reservation, usage, meta);
      proc.kill('SIGSTOP');
      const from = Date.now();
      const waiting = admit(unbounded).then(
        () => 'admitted',
        () => 'failed',
      );
      const e = await admit(bounded).catch((x: ApiError) => x);
      const took = Date.now() - from;
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).getStatus()).toBe(503);
      expect((e as ApiError).code).toBe('quota_unavailable');
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(1500);
      // without the bound the request waits with Redis
      await sleep(1000);
      expect(await Promise.race([waiting, sleep(0).then(() => 'pending')])).toBe('pending');
      proc.kill('SIGCONT');
      expect(await waiting).toBe('admitted');
      // nothing is left stuck on the bounded instance's connection
      await bounded.quota.settle((await admit(bounded)).reservation, usage, meta);
    } finally {
      proc.kill('SIGCONT');
      await Promise.all([bounded.close(), unbounded.close()]);
      proc.kill('SIGKILL');
    }
  });
});

describe('PostgreSQL stopped for 5 s: no ledger row lost', () => {
  let pg: EmbeddedPostgres;
  let db: string;
  let inst: Instance;
  let dataDir: string;

  beforeAll(async () => {
    const started = await startPostgres();
    pg = started.pg;
    await withClient(started.adminUrl, (c) => c.query('CREATE DATABASE ledger_test'));
    db = dbUrl(started.adminUrl, 'ledger_test');
    const config = loadConfig({
      DATA_DIR: '/tmp/gw-test-config',
      MASTER_KEY: 'x'.repeat(32),
      JWT_SECRET: 'y'.repeat(40),
    });
    const ds = new DataSource(dataSourceOptions(config, db));
    await ds.initialize();
    await ds.runMigrations({ transaction: 'each' });
    await ds.destroy();
    dataDir = mkdtempSync(join(tmpdir(), 'gw-quota-spool-'));
    inst = await startInstance({
      databaseUrl: db,
      env: {
        LEDGER_FLUSH_MS: '100',
        DATA_DIR: dataDir,
        SHUTDOWN_GRACE_MS: '1000',
        READY_MAX_LEDGER_BACKLOG: '30',
      },
    });
  });
  afterAll(async () => {
    await inst?.close().catch(() => undefined);
    await pg?.stop();
  });

  it('queues while PostgreSQL is down, retries with backoff, writes every row once it is back', async () => {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf({ tenantId, userId, apiKeyId });
    let sent = 0;
    let tokens = 0;
    const one = async () => {
      const { reservation } = await inst.quota.admit(s, {
        model: 'm',
        promptTokens: 50,
        wanted: 0,
      });
      const n = 10 + (sent % 9);
      await inst.quota.settle(
        reservation,
        { promptTokens: n, completionTokens: 1, costMicros: 3 },
        { ...meta, requestId: `req-${sent}` },
      );
      sent++;
      tokens += n + 1;
    };
    for (let i = 0; i < 20; i++) await one();
    await until('the first rows are written', () => inst.ledger.depth === 0);

    await pg.stop();
    const downAt = Date.now();
    while (Date.now() - downAt < 5000) {
      await one();
      await sleep(100);
    }
    expect(inst.ledger.depth).toBeGreaterThan(30);
    expect(inst.ledger.flushFailures).toBeGreaterThan(0);
    const ready = await request(inst.url).get('/health/ready');
    expect(ready.status).toBe(503);
    const ledgerCheck = inst.app.get(ReadinessRegistry).checks.find((c) => c.name === 'ledger')!;
    await expect(ledgerCheck.check()).rejects.toThrow(/ledger backlog \d+ above READY_MAX_LEDGER_BACKLOG=30/);

    await pg.start();
    await until('the backlog drains', () => inst.ledger.depth === 0);
    const ledger = await ledgerSums(db, { tenantId });
    expect(ledger.rows).toBe(sent);
    expect(ledger.tokens).toBe(tokens);
    const [k] = await sql<{ current_quota_usage: string; spend: string }>(
      db,
      `SELECT current_quota_usage, spend FROM api_keys WHERE id = $1`,
      [apiKeyId],
    );
    expect(Number(k.current_quota_usage)).toBe(tokens);
    expect(k.spend).toBe(((sent * 3) / 1e6).toFixed(6));
    const dup = await sql(db, `SELECT request_id FROM usage_records GROUP BY request_id HAVING count(*) > 1`);
    expect(dup).toEqual([]);
    expect(inst.ledger.droppedRecords + inst.ledger.rejectedRecords).toBe(0);
  });

  it('shutdown while PostgreSQL is down spools the queue to DATA_DIR; the next start writes it', async () => {
    const tenantId = await insertTenant(db);
    const userId = await insertUser(db, tenantId);
    const apiKeyId = await insertKey(db, tenantId, userId);
    const s = subjectOf({ tenantId, userId, apiKeyId });
    await pg.stop();
    for (let i = 0; i < 7; i++) {
      const { reservation } = await inst.quota.admit(s, {
        model: 'm',
        promptTokens: 5,
        wanted: 0,
      });
      await inst.quota.settle(reservation, { promptTokens: 4, completionTokens: 1, costMicros: 0 }, meta);
    }
    // one request still in flight when the gateway shuts down, settled after the ledger's flush
    const late = await inst.quota.admit(s, { model: 'm', promptTokens: 5, wanted: 0 });
    const old = inst;
    await inst.close();
    await old.quota.settle(late.reservation, { promptTokens: 2, completionTokens: 1, costMicros: 0 }, meta);
    expect(readdirSync(join(dataDir, 'ledger-spool')).filter((f) => f.endsWith('.jsonl'))).toHaveLength(2);
    await pg.start();
    inst = await startInstance({ databaseUrl: db, env: { LEDGER_FLUSH_MS: '100', DATA_DIR: dataDir } });
    await until('the spooled rows are written', async () => (await ledgerSums(db, { tenantId })).rows === 8);
    // what is left is the new run's own journal, empty once its queue is written
    const spoolDir = join(dataDir, 'ledger-spool');
    await until('the spool files are removed', () => {
      const left = readdirSync(spoolDir);
      return left.length === 1 && statSync(join(spoolDir, left[0])).size === 0;
    });
    expect((await ledgerSums(db, { tenantId })).tokens).toBe(38);
  });
});
