import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@app/config';
import { ReadinessRegistry } from '@app/observability';
import { QuotaMetrics } from '../quota-metrics';
import { LedgerRecord, serializeRecord } from './ledger-record';
import { LedgerService } from './ledger.service';
import type { LedgerRepository } from './ledger.repository';
import type { LedgerStreamService } from './ledger-stream.service';

function record(id: string): LedgerRecord {
  return {
    id,
    requestId: `req-${id}`,
    tenantId: '11111111-1111-4111-8111-111111111111',
    userId: null,
    apiKeyId: '33333333-3333-4333-8333-333333333333',
    model: 'm',
    provider: 'mock',
    promptTokens: 1,
    completionTokens: 2,
    cacheWriteTokens: 0,
    cacheReadTokens: 0,
    costMicros: 3,
    status: 'success',
    latencyMs: 4,
    deployment: null,
    attempts: 1,
    createdAt: new Date('2026-11-29T10:00:00Z'),
  };
}

/**
 * A LedgerService on a DATA_DIR of its own (no flush timer within a test: LEDGER_FLUSH_MS
 * 600000 unless `env` says otherwise), with stand-ins for what it writes through; `close`
 * closes its journal and removes the directory.
 */
function ledgerFor(
  env: Record<string, string>,
  insertBatch: (rows: LedgerRecord[]) => Promise<number>,
  stream?: Pick<LedgerStreamService, 'passNow' | 'onCommitted'>,
) {
  const dir = mkdtempSync(join(tmpdir(), 'gw-ledger-unit-'));
  const config = loadConfig({
    DATA_DIR: dir,
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    LEDGER_FLUSH_MS: '600000',
    ...env,
  });
  const repo = { insertBatch } as unknown as LedgerRepository;
  const ledger = new LedgerService(
    repo,
    config,
    new ReadinessRegistry(),
    new QuotaMetrics(),
    stream as LedgerStreamService | undefined,
  );
  ledger.onModuleInit();
  const close = async () => {
    await (ledger as unknown as { closeJournal(): Promise<void> }).closeJournal();
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, ledger, close };
}

/** The journal alone: nothing here reaches PostgreSQL (no flush tick within the test). */
describe('LedgerService journal', () => {
  const { dir, ledger, close } = ledgerFor({}, () => Promise.reject(new Error('not written in this test')));
  const journal = () => {
    const spool = join(dir, 'ledger-spool');
    const file = readdirSync(spool).find((f) => f.startsWith('journal-'))!;
    return readFileSync(join(spool, file), 'utf8');
  };

  afterAll(close);

  it('the rows of one turn are written together; journalWritten resolves only once they are in the file', async () => {
    const rows = [record('a'), record('b'), record('c')];
    for (const r of rows) ledger.enqueue(r);
    const written = ledger.journalWritten;
    expect(written).toBeInstanceOf(Promise);
    expect(journal()).toBe(''); // waiting for the end of this turn
    let seen = '';
    await written!.then(() => (seen = journal()));
    expect(seen).toBe(rows.map((r) => serializeRecord(r) + '\n').join(''));
    expect(ledger.journalWritten).toBeUndefined();
    expect(ledger.depth).toBe(3);
  });

  it('a row enqueued after a turn was written waits for the next one', async () => {
    const before = journal();
    ledger.enqueue(record('d'));
    expect(journal()).toBe(before);
    await ledger.journalWritten;
    expect(journal()).toBe(before + serializeRecord(record('d')) + '\n');
  });
});

/** A full queue starts one tick, not one per row while that tick waits for the stream's pass. */
describe('LedgerService ticks', () => {
  const batches: number[] = [];
  let passes = 0;
  let release = () => {};
  const { ledger, close } = ledgerFor(
    { LEDGER_BATCH_SIZE: '5' },
    (rows) => (batches.push(rows.length), Promise.resolve(rows.length)),
    {
      // the pass takes as long as the test says (a slow Redis or PostgreSQL)
      passNow: () => (passes++, new Promise<boolean>((r) => (release = () => r(false)))),
      onCommitted: () => undefined,
    },
  );
  const turn = () => new Promise((r) => setTimeout(r, 5));

  afterAll(close);

  it('rows enqueued while a tick waits for the pass start no other tick; the next full queue starts the next', async () => {
    for (let i = 0; i < 5; i++) ledger.enqueue(record(`t${i}`));
    await turn();
    expect(passes).toBe(1); // the fifth row filled the batch
    for (let i = 5; i < 40; i++) {
      ledger.enqueue(record(`t${i}`));
      await turn();
    }
    expect(passes).toBe(1);
    release();
    await turn();
    // the tick wrote everything queued, in batches of LEDGER_BATCH_SIZE, once
    expect(batches).toEqual([5, 5, 5, 5, 5, 5, 5, 5]);
    expect(ledger.depth).toBe(0);
    for (let i = 40; i < 44; i++) ledger.enqueue(record(`t${i}`));
    await turn();
    expect(passes).toBe(1); // not full yet: waits for LEDGER_FLUSH_MS
    ledger.enqueue(record('t44'));
    await turn();
    expect(passes).toBe(2);
    release();
    await turn();
    expect(batches.length).toBe(9);
  });
});

/** After a clean pass, rows queued while it ran are left to the next pass; otherwise all are written. */
describe('LedgerService drain after the stream pass', () => {
  const inserted: string[][] = [];
  let committed: (rows: LedgerRecord[]) => void = () => undefined;
  let finish: (clean: boolean) => void = () => undefined;
  const { dir, ledger, close } = ledgerFor(
    {},
    (rows) => (inserted.push(rows.map((r) => r.id)), Promise.resolve(rows.length)),
    {
      passNow: () => new Promise<boolean>((r) => (finish = r)),
      onCommitted: (fn) => (committed = fn),
    },
  );
  const tick = () => (ledger as unknown as { tick(): Promise<void> }).tick();
  const turn = () => new Promise((r) => setTimeout(r, 20));
  const spool = join(dir, 'ledger-spool');
  const journals = () => readdirSync(spool).filter((f) => f.startsWith('journal-'));
  const journalIds = () =>
    journals()
      .flatMap((f) => readFileSync(join(spool, f), 'utf8').split('\n'))
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as LedgerRecord).id);

  afterAll(close);

  it('writes what the pass did not move from before the tick, keeps the rest queued and journaled', async () => {
    for (const id of ['a', 'b', 'c']) ledger.enqueue(record(id));
    await turn();
    const running = tick();
    for (const id of ['d', 'e']) ledger.enqueue(record(id)); // settled while the pass runs
    await turn();
    committed([record('a'), record('d')]); // the pass moved these
    finish(true);
    await running;
    expect(inserted).toEqual([['b', 'c']]);
    expect(ledger.depth).toBe(1); // e: the next pass's
    await turn();
    expect(journals()).toHaveLength(1); // the old file went once the new one was on disk
    expect(journalIds()).toEqual(['e']);
  });

  it('the next tick writes it if the stream did not move it', async () => {
    const running = tick();
    finish(true);
    await running;
    expect(inserted).toEqual([['b', 'c'], ['e']]);
    expect(ledger.depth).toBe(0);
  });

  it('a pass that was not clean (failed, timed out, found a stream lost): everything is written', async () => {
    ledger.enqueue(record('f'));
    await turn();
    const running = tick();
    ledger.enqueue(record('g'));
    await turn();
    finish(false);
    await running;
    expect(inserted).toEqual([['b', 'c'], ['e'], ['f', 'g']]);
    expect(ledger.depth).toBe(0);
    await turn();
    expect(journalIds()).toEqual([]);
  });
});
