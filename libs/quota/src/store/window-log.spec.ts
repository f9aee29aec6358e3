import { RpmLog, TpmLog } from './window-log';

describe('RpmLog', () => {
  it('counts the times after the cutoff; the oldest is the first still in the window', () => {
    const log = new RpmLog();
    for (const t of [10, 20, 30, 40]) log.add(t);
    log.trim(20);
    expect([log.count, log.oldest]).toEqual([2, 30]);
    log.trim(40);
    expect([log.count, log.oldest]).toEqual([0, undefined]);
    log.add(50);
    expect([log.count, log.oldest]).toEqual([1, 50]);
  });

  it('a time older than the newest (the clock stepped back) takes its place in the order', () => {
    const log = new RpmLog();
    for (const t of [10, 30, 20, 5, 30, 25]) log.add(t);
    log.trim(9);
    expect([log.count, log.oldest]).toEqual([5, 10]);
    log.trim(20);
    expect([log.count, log.oldest]).toEqual([3, 25]);
    log.trim(25);
    expect([log.count, log.oldest]).toEqual([2, 30]);
  });

  it('what left the window is let go once it is most of the array, and the figures stay', () => {
    const log = new RpmLog();
    for (let t = 1; t <= 5000; t++) log.add(t);
    for (let cut = 0; cut <= 4000; cut += 7) {
      log.trim(cut);
      expect([log.count, log.oldest]).toEqual([5000 - cut, cut + 1]);
    }
    const held = (log as unknown as { times: number[] }).times.length;
    expect(held).toBeLessThan(5000);
    log.trim(4000);
    log.add(4000.5);
    expect([log.count, log.oldest]).toEqual([1001, 4000.5]);
  });
});

describe('TpmLog', () => {
  it('keeps the sum of the tokens in the window through adds, corrections and the cutoff', () => {
    const log = new TpmLog();
    log.add('a', 10, 100);
    log.add('b', 20, 50);
    log.add('c', 30, 7);
    expect([log.used, log.oldest, log.size]).toEqual([157, 10, 3]);
    log.correct('b', 20);
    expect(log.used).toBe(127);
    log.correct('a', null);
    expect([log.used, log.oldest, log.size]).toEqual([27, 20, 2]);
    log.correct('missing', 5);
    expect(log.used).toBe(27);
    log.trim(20);
    expect([log.used, log.oldest, log.size]).toEqual([7, 30, 1]);
    log.trim(30);
    expect([log.used, log.oldest, log.size]).toEqual([0, undefined, 0]);
  });

  it('an entry older than the newest (the clock stepped back) is kept in time order', () => {
    const log = new TpmLog();
    log.add('a', 30, 1);
    log.add('b', 10, 2);
    log.add('c', 20, 4);
    expect([...log.values()].map((e) => e.at)).toEqual([10, 20, 30]);
    log.trim(15);
    expect([log.used, log.oldest]).toEqual([5, 20]);
  });
});
