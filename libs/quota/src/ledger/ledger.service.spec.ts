import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@app/config';
import { ReadinessRegistry } from '@app/observability';
import { QuotaMetrics } from '../quota-metrics';
import { LedgerRecord, serializeRecord } from './ledger-record';
import { LedgerService } from './ledger.service';
import type { LedgerRepository } from './ledger.repository';

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

/** The journal alone: nothing here reaches PostgreSQL (no flush tick within the test). */
describe('LedgerService journal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-ledger-unit-'));
  const config = loadConfig({
    DATA_DIR: dir,
    MASTER_KEY: 'x'.repeat(32),
    JWT_SECRET: 'y'.repeat(40),
    LEDGER_FLUSH_MS: '600000',
  });
  const repo = {
    insertBatch: () => Promise.reject(new Error('not written in this test')),
  } as unknown as LedgerRepository;
  const ledger = new LedgerService(repo, config, new ReadinessRegistry(), new QuotaMetrics());
  ledger.onModuleInit();
  const journal = () => {
    const spool = join(dir, 'ledger-spool');
    const file = readdirSync(spool).find((f) => f.startsWith('journal-'))!;
    return readFileSync(join(spool, file), 'utf8');
  };

  afterAll(async () => {
    await (ledger as unknown as { closeJournal(): Promise<void> }).closeJournal();
    rmSync(dir, { recursive: true, force: true });
  });

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
