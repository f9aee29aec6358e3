import * as bcrypt from 'bcrypt';
import { readdirSync, readFileSync } from 'node:fs';
import { BcryptPool } from './bcrypt-pool';

/** Nice values of this process's threads (field 19 of /proc/self/task/<tid>/stat). */
function threadNices(): number[] {
  return readdirSync('/proc/self/task').map((t) => {
    const stat = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

describe('BcryptPool', () => {
  const hash = bcrypt.hashSync('right', 4);
  let pool: BcryptPool;
  afterEach(() => pool?.close());

  it('compares on worker threads at the asked nice value; the process keeps its own', async () => {
    pool = new BcryptPool(2, 10);
    const results = await Promise.all([
      pool.compare('right', hash),
      pool.compare('wrong', hash),
      pool.compare('right', hash),
    ]);
    expect(results).toEqual([true, false, true]);
    expect(pool.niced).toBe(true);
    const nices = threadNices();
    expect(nices.filter((n) => n === 10)).toHaveLength(2); // two workers, no more than the size
    expect(nices[0]).toBe(0); // the main thread (first task) is untouched
  });

  it('a malformed hash is a mismatch, not a crash; the pool keeps serving', async () => {
    pool = new BcryptPool(1, 0);
    await expect(pool.compare('x', 'not-a-hash')).resolves.toBe(false);
    await expect(pool.compare('right', hash)).resolves.toBe(true);
  });

  it('a closed pool refuses new compares', async () => {
    pool = new BcryptPool(1, 0);
    await pool.close();
    await expect(pool.compare('right', hash)).rejects.toThrow('closed');
  });
});
