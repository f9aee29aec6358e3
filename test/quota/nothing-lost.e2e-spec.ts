import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import type { EmbeddedPostgres } from '@app/database';
import { buildGateway, GatewayProcess, startGateway } from '../harness/gateway-process';
import { startPostgres } from '../harness/servers';
import { call, dropAgents, Result, shoot } from '../reliability/client';
import { FakeLlm, startFakeLlm } from '../reliability/fake-llm';
import {
  chatBody,
  counters,
  GATEWAY_ENV,
  KeyRef,
  ledgerRows,
  newKey,
  newTenant,
  newUser,
  privatePostgres,
  RedisServer,
  sql,
  startRedis,
  warm,
  writeModelsFile,
} from '../reliability/world';

/**
 * Issue 13 must-shows with real gateway processes: the in-process store survives SIGTERM
 * and SIGKILL restarts (counters rebuilt from the ledger and the journal); a SIGKILL right
 * after the last answer loses no ledger row (journal without Redis, stream with Redis);
 * a torn journal line is skipped; a shutdown while PostgreSQL is black-holed ends in time
 * with the rows kept on disk, written once on the next start.
 */
jest.setTimeout(120_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => Promise<boolean> | boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await fn()) return Date.now() - t0;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

const completion = (base: string, k: KeyRef, stream = false) =>
  shoot({ base, instance: base, key: k.key, body: chatBody({ maxTokens: 30, stream }).body });

async function keyInfo(base: string, k: KeyRef): Promise<Record<string, unknown>> {
  const r = await call('GET', `${base}/v1/key/info`, undefined, { authorization: `Bearer ${k.key}` });
  if (r.status !== 200) throw new Error(`key info: ${r.status} ${r.text}`);
  return JSON.parse(r.text) as Record<string, unknown>;
}

/** `n` completions on `k`, `concurrency` at a time; every one must be answered 200. */
async function fire(base: string, k: KeyRef, n: number, concurrency = 8): Promise<Result[]> {
  await warm([base], [k]); // the key in the caches: the burst does not wait on PostgreSQL connections
  const out: Result[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        out.push(await completion(base, k, next % 2 === 0));
      }
    }),
  );
  return out;
}

const notAnswered = (rs: Result[], gw?: GatewayProcess) => {
  const bad = rs
    .filter((r) => r.status !== 200 || !r.complete)
    .map((r) => `${r.status} ${r.code ?? r.netError ?? ''} ${r.message ?? ''}`);
  if (bad.length && gw) {
    const errors = gw
      .stdout()
      .split('\n')
      .filter((l) => /"level":(40|50|60)/.test(l))
      .slice(-20);
    process.stdout.write(`gateway errors:\n${errors.join('\n')}\n${gw.stderr().slice(-2000)}\n`);
  }
  return bad;
};
async function restart(gw: GatewayProcess, signal: 'SIGTERM' | 'SIGKILL', env: Record<string, string>) {
  dropAgents();
  gw.proc.kill(signal);
  await gw.exited;
  return startGateway(env);
}

describe('nothing lost: restarts, crashes and a black-holed PostgreSQL (gateway processes)', () => {
  let pg: EmbeddedPostgres;
  let db: string;
  let fake: FakeLlm;
  let models: string;
  const running: GatewayProcess[] = [];
  const track = (g: GatewayProcess) => (running.push(g), g);

  beforeAll(async () => {
    buildGateway();
    ({ pg, url: db } = await privatePostgres());
    fake = await startFakeLlm();
    models = writeModelsFile(fake.url);
  }, 240_000);

  afterAll(async () => {
    dropAgents();
    for (const g of running)
      if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL');
    await fake?.close();
    await pg?.stop().catch(() => undefined);
  });

  const embeddedEnv = (dataDir: string) => ({
    ...GATEWAY_ENV,
    DATABASE_URL: db,
    MODELS_FILE: models,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
  });

  it('in-process store: a key out of tokens and a key out of USD stay refused after SIGTERM and SIGKILL restarts', async () => {
    const env = embeddedEnv(mkdtempSync(join(tmpdir(), 'gw-lost-restart-')));
    let gw = track(await startGateway(env));
    const t = await newTenant(gw.url);
    const u = await newUser(gw.url, t.id);
    const one = chatBody({ maxTokens: 30, stream: false });
    const tokens = await newKey(gw.url, t.id, u.id, { quota_limit: 3 * one.reserved.tokens });
    const usd = await newKey(gw.url, t.id, u.id, { max_budget: (3 * one.reserved.micros) / 1e6 });
    for (const k of [tokens, usd]) {
      const served = [];
      for (let i = 0; i < 4; i++) served.push((await completion(gw.url, k)).status);
      expect(served).toEqual([200, 200, 200, 429]);
    }
    await until(
      'the ledger rows are written',
      async () => (await ledgerRows(db, [t.id])).length === 6,
      10_000,
    );
    const before = [await keyInfo(gw.url, tokens), await keyInfo(gw.url, usd)];
    expect(before.map((i) => [i.current_quota_usage, Math.round(Number(i.spend) * 1e6)])).toEqual([
      [3 * one.reserved.tokens, expect.anything()],
      [expect.anything(), 3 * one.reserved.micros],
    ]);
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      gw = track(await restart(gw, signal, env));
      expect(gw.stdout()).toMatch(/rebuilt the in-process quota counters of \d+ tenant\(s\) from the ledger/);
      for (const k of [tokens, usd]) {
        const r = await completion(gw.url, k);
        expect([signal, r.status, r.code]).toEqual([
          signal,
          429,
          k === tokens ? 'tokens_quota_exceeded' : 'budget_exceeded',
        ]);
      }
      expect([await keyInfo(gw.url, tokens), await keyInfo(gw.url, usd)]).toEqual(before);
    }
    gw.proc.kill('SIGTERM');
    await gw.exited;
  });

  it('in-process store: SIGKILL right after the last of 400 answers; every answered request has its row after the restart', async () => {
    const env = embeddedEnv(mkdtempSync(join(tmpdir(), 'gw-lost-kill-')));
    let gw = track(await startGateway(env));
    const t = await newTenant(gw.url);
    const u = await newUser(gw.url, t.id);
    const k = await newKey(gw.url, t.id, u.id);
    const results = await fire(gw.url, k, 400);
    gw.proc.kill('SIGKILL');
    expect(notAnswered(results, gw)).toEqual([]);
    await gw.exited;
    gw = track(await startGateway(env));
    const ids = new Set(results.map((r) => r.requestId));
    const waited = await until(
      'a row for every answered request',
      async () => (await ledgerRows(db, [t.id])).filter((r) => ids.has(r.request_id)).length === 400,
      20_000,
    );
    const rows = await ledgerRows(db, [t.id]);
    expect(rows).toHaveLength(400); // once each
    const told = results.reduce((n, r) => n + r.usage!.prompt + r.usage!.completion, 0);
    expect(rows.reduce((n, r) => n + r.tokens, 0)).toBe(told);
    expect((await keyInfo(gw.url, k)).current_quota_usage).toBe(told);
    process.stdout.write(`embedded SIGKILL: all 400 rows ${waited} ms after the restart\n`);
    gw.proc.kill('SIGTERM');
    await gw.exited;
  });

  it('a torn last journal line is skipped with a warning; the good rows are written', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-lost-torn-'));
    const env = embeddedEnv(dataDir);
    let gw = track(await startGateway(env));
    const t = await newTenant(gw.url);
    const u = await newUser(gw.url, t.id);
    const k = await newKey(gw.url, t.id, u.id);
    await fire(gw.url, k, 5, 1);
    // the journal of a run killed in the middle of an append: whole rows, then half a row
    gw.proc.kill('SIGSTOP'); // no flush from here on
    const spool = join(dataDir, 'ledger-spool');
    const journal = readdirSync(spool).find((f) => f.startsWith('journal-'))!;
    const rows = readFileSync(join(spool, journal), 'utf8').split('\n').filter(Boolean);
    gw.proc.kill('SIGKILL');
    await gw.exited;
    await sql(db, `DELETE FROM usage_records WHERE tenant_id = $1`, [t.id]);
    mkdirSync(spool, { recursive: true });
    const good = rows.length ? rows : [];
    const torn = JSON.stringify({ id: '00000000-0000-4000-8000-000000000000', tenantId: t.id }).slice(0, 30);
    writeFileSync(join(spool, 'journal-1-1-aaaaaa.jsonl'), [...good, torn].join('\n'));
    gw = track(await startGateway(env));
    await until(
      'the good rows are written',
      async () => (await ledgerRows(db, [t.id])).length === good.length,
      10_000,
    );
    expect(gw.stdout() + gw.stderr()).toMatch(/torn last line is not a whole usage record .*skipped/);
    gw.proc.kill('SIGTERM');
    await gw.exited;
  });

  it('PostgreSQL black-holed (SIGSTOP) during shutdown: exit within the grace period, rows kept, written once on the next start', async () => {
    const started = await startPostgres();
    // a PostgreSQL of its own, which this test freezes (the gateway migrates it on start)
    await sql(started.adminUrl, 'CREATE DATABASE lost_stop');
    const url = started.adminUrl.replace(/\/postgres$/, '/lost_stop');
    const dataDir = mkdtempSync(join(tmpdir(), 'gw-lost-stop-'));
    const env = {
      ...embeddedEnv(dataDir),
      DATABASE_URL: url,
      SHUTDOWN_GRACE_MS: '3000',
      LEDGER_FLUSH_MS: '5000',
    };
    let gw = track(await startGateway(env));
    try {
      const t = await newTenant(gw.url);
      const u = await newUser(gw.url, t.id);
      const k = await newKey(gw.url, t.id, u.id);
      await sleep(5500); // one flush tick passed: the next rows wait in the queue
      const results = await fire(gw.url, k, 20, 4);
      expect(notAnswered(results)).toEqual([]);
      const pids = postgresPids(started.dataDir);
      for (const p of pids) process.kill(p, 'SIGSTOP');
      const t0 = Date.now();
      gw.proc.kill('SIGTERM');
      await gw.exited;
      const took = Date.now() - t0;
      for (const p of pids) process.kill(p, 'SIGCONT');
      if (took > 7000)
        process.stdout.write(`gateway output:\n${gw.stdout().slice(-6000)}\n${gw.stderr().slice(-2000)}\n`);
      expect(took).toBeLessThan(3000 + 4000);
      expect(gw.stdout() + gw.stderr()).toMatch(
        /usage record\(s\) kept in .*journal-.*written on next start/,
      );
      gw = track(await startGateway(env));
      await until(
        'the kept rows are written',
        async () => (await ledgerRows(url, [t.id])).length === 20,
        15_000,
      );
      await sleep(500);
      expect(await ledgerRows(url, [t.id])).toHaveLength(20);
      process.stdout.write(`shutdown with PostgreSQL stopped: exit after ${took} ms\n`);
      gw.proc.kill('SIGTERM');
      await gw.exited;
    } finally {
      await started.pg.stop().catch(() => undefined);
    }
  });

  describe('with Redis: two instances', () => {
    let redisServer: RedisServer;
    let redis: Redis;
    beforeAll(async () => {
      redisServer = await startRedis();
      redis = new Redis(redisServer.url);
    });
    afterAll(async () => {
      redis?.disconnect();
      redisServer?.proc.kill('SIGKILL');
    });

    it('400 completions answered by A, SIGKILL A right after the last answer: every row within 20 s, Redis counters = ledger', async () => {
      const env = (dir: string) => ({ ...embeddedEnv(dir), REDIS_URL: redisServer.url });
      const envA = env(mkdtempSync(join(tmpdir(), 'gw-lost-a-')));
      let a = track(await startGateway(envA));
      const b = track(await startGateway(env(mkdtempSync(join(tmpdir(), 'gw-lost-b-')))));
      const t = await newTenant(a.url);
      const u = await newUser(a.url, t.id);
      const k = await newKey(a.url, t.id, u.id);
      const results = await fire(a.url, k, 400);
      a.proc.kill('SIGKILL');
      expect(notAnswered(results, a)).toEqual([]);
      await a.exited;
      const killedAt = Date.now();
      a = track(await startGateway(envA));
      const ids = new Set(results.map((r) => r.requestId));
      await until(
        'a row for every answered request',
        async () => (await ledgerRows(db, [t.id])).filter((r) => ids.has(r.request_id)).length === 400,
        20_000,
      );
      const waited = Date.now() - killedAt;
      const rows = await ledgerRows(db, [t.id]);
      expect(rows).toHaveLength(400);
      const told = results.reduce((n, r) => n + r.usage!.prompt + r.usage!.completion, 0);
      const ledger = { tokens: told, micros: rows.reduce((n, r) => n + r.micros, 0) };
      expect(rows.reduce((n, r) => n + r.tokens, 0)).toBe(told);
      const ids3 = { tenantId: t.id, userId: u.id, apiKeyId: k.keyId };
      for (const level of ['key', 'user', 'tenant'] as const)
        expect([level, await counters(redis, level, ids3, 'none')]).toEqual([level, ledger]);
      process.stdout.write(`Redis, SIGKILL of A: all 400 rows ${waited} ms after the kill\n`);
      for (const g of [a, b]) g.proc.kill('SIGTERM');
      await Promise.all([a.exited, b.exited]);
    });
  });
});

/** The postmaster and its children (PostgreSQL keeps serving open connections from its backends). */
function postgresPids(dataDir: string): number[] {
  const main = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(main)], { encoding: 'utf8' })
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
  return [main, ...children];
}
