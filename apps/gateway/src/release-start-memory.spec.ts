import { releaseStartMemory } from './release-start-memory';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(test: () => boolean, ms = 5_000): Promise<void> {
  for (const end = Date.now() + ms; !test() && Date.now() < end;) await sleep(10);
}

/** Keeps the event loop busy for `ms`, in slices that let timers run. */
async function busy(ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const slice = Date.now() + 20;
    while (Date.now() < slice);
    await new Promise((r) => setImmediate(r));
  }
}

describe('releaseStartMemory', () => {
  it('once quiet: a young collection, then after quietMs more of quiet a full one, and no more while quiet', async () => {
    const calls: string[] = [];
    releaseStartMemory({
      gc: (o) => calls.push(o?.type ?? 'full'),
      quietMs: 500,
      // 100 ms ticks, busy from 50 ms of work in one: jest's own work on a loaded CI machine
      // (a module load, a collection) reached 50% of a 20 ms tick once and repeated the young one
      quietElu: 0.5,
      tickMs: 100,
    });
    const t0 = Date.now();
    await until(() => calls.length > 0);
    expect(calls).toEqual(['minor']);
    expect(Date.now() - t0).toBeLessThan(500);
    const t1 = Date.now();
    await until(() => calls.length > 1);
    expect(calls).toEqual(['minor', 'full']);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(400);
    await sleep(1000);
    expect(calls).toEqual(['minor', 'full']);
  });

  it('after a busy spell that quiet follows, the same again (until giveUpMs)', async () => {
    const calls: string[] = [];
    const t0 = Date.now();
    releaseStartMemory({
      gc: (o) => calls.push(o?.type ?? 'full'),
      quietMs: 300,
      quietElu: 0.5,
      tickMs: 100,
      giveUpMs: 3_000,
    });
    await until(() => calls.length > 1);
    expect(calls).toEqual(['minor', 'full']);
    await busy(400);
    await until(() => calls.length > 3);
    expect(calls).toEqual(['minor', 'full', 'minor', 'full']);
    // past giveUpMs a busy spell and quiet change nothing
    await sleep(Math.max(0, 3_200 - (Date.now() - t0)));
    await busy(400);
    await sleep(800);
    expect(calls).toEqual(['minor', 'full', 'minor', 'full']);
  });

  it('makes no full collection while the event loop is busy, and gives up after giveUpMs', async () => {
    const calls: string[] = [];
    releaseStartMemory({
      gc: (o) => calls.push(o?.type ?? 'full'),
      quietMs: 200,
      tickMs: 20,
      giveUpMs: 500,
    });
    await busy(700);
    await sleep(400);
    expect(calls).not.toContain('full');
  });

  it('without --expose-gc does nothing', () => {
    expect(() => releaseStartMemory({ gc: undefined })()).not.toThrow();
  });
});
