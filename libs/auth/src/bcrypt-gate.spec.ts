import type { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { BcryptGate } from './bcrypt-gate';

describe('BcryptGate', () => {
  it('runs at most BCRYPT_CONCURRENCY at once, queues BCRYPT_QUEUE, refuses the rest at once with 503', async () => {
    const gate = new BcryptGate(
      { BCRYPT_CONCURRENCY: 2, BCRYPT_QUEUE: 3 } as AppConfig,
      new MetricsService(),
    );
    let active = 0;
    let peak = 0;
    const releases: Array<() => void> = [];
    const work = () =>
      new Promise<string>((resolve) => {
        active++;
        peak = Math.max(peak, active);
        releases.push(() => {
          active--;
          resolve('ok');
        });
      });
    const runs = Array.from({ length: 8 }, () => gate.run('login', work).catch((e: ApiError) => e));
    await new Promise((r) => setImmediate(r));
    expect(gate.inFlight).toBe(2);
    // 2 running + 3 waiting; the other 3 were refused without waiting.
    while (releases.length) {
      releases.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.all(runs);
    expect(results.filter((r) => r === 'ok')).toHaveLength(5);
    const refused = results.filter((r) => r instanceof ApiError);
    expect(refused).toHaveLength(3);
    expect(refused[0].getStatus()).toBe(503);
    expect(refused[0].code).toBe('auth_busy');
    expect(peak).toBe(2);
    expect(gate.inFlight).toBe(0);
    expect(gate.stats).toMatchObject({ compares: 5, refused: 3, maxActive: 2 });
  });
});
