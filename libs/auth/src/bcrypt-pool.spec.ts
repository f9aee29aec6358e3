import * as bcrypt from 'bcrypt';
import { readdirSync, readFileSync } from 'node:fs';
import { BcryptPool } from './bcrypt-pool';

/** Nice value of one of this process's threads (field 19 of /proc/self/task/<tid>/stat). */
function niceOf(tid: string | number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** How many of this process's threads run at `nice` (other pools of the same test run included). */
const threadsAt = (nice: number) =>
  readdirSync('/proc/self/task').filter((t) => {
    try {
      return niceOf(t) === nice;
    } catch {
      return false; // the thread ended meanwhile
    }
  }).length;

describe('BcryptPool', () => {
  const hash = bcrypt.hashSync('right', 4);
  let pool: BcryptPool;
  afterEach(() => pool?.close());

  it('compares on worker threads at the asked nice value; the process keeps its own', async () => {
    const before = threadsAt(10);
    pool = new BcryptPool(2, 10);
    const results = await Promise.all([
      pool.compare('right', hash),
      pool.compare('wrong', hash),
      pool.compare('right', hash),
    ]);
    expect(results).toEqual([true, false, true]);
    expect(pool.niced).toBe(true);
    expect(threadsAt(10) - before).toBe(2); // two workers, no more than the size
    expect(niceOf(process.pid)).toBe(0); // the main thread (its tid is the pid) is untouched
  });

  it('a malformed hash is a mismatch, not a crash; the pool keeps serving', async () => {
    pool = new BcryptPool(1, 0);
    await expect(pool.compare('x', 'not-a-hash')).resolves.toBe(false);
    await expect(pool.compare('right', hash)).resolves.toBe(true);
  });

  it('an idle worker ends after idleMs; the next compare starts another', async () => {
    pool = new BcryptPool(1, 0, 200);
    await expect(pool.compare('right', hash)).resolves.toBe(true);
    expect(pool.workers).toBe(1);
    await new Promise((r) => setTimeout(r, 600));
    expect(pool.workers).toBe(0);
    await expect(pool.compare('right', hash)).resolves.toBe(true);
    expect(pool.workers).toBe(1);
  });

  it('a closed pool refuses new compares', async () => {
    pool = new BcryptPool(1, 0);
    await pool.close();
    await expect(pool.compare('right', hash)).rejects.toThrow('closed');
  });
});
