import request from 'supertest';
import { createTestApp, describeWithRedis, TEST_LOGS } from '../harness/app';
import { createTenantWithAdmin, masterIn } from '../harness/factories';

/** What keeps this process alive right now: resource type -> count (ref'd timers, sockets, ...). */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/**
 * Quiet tests that end on their own (README "Tests"): a gateway the harness started and
 * closed leaves no timer, socket or handle behind (else Jest prints "did not exit one second
 * after the test run has completed"), and logs nothing unless TEST_LOGS=1 asks for it.
 */
describeWithRedis('a closed test gateway holds nothing open and logged nothing', () => {
  it('after completions (streamed too) on Redis, close() leaves no timer, socket or handle', async () => {
    const before = resources();
    const t = await createTestApp({ redis: true });
    if (!TEST_LOGS) expect(t.config).toMatchObject({ LOG_LEVEL: 'silent', LOG_STDOUT: false });
    const { tenantId } = await createTenantWithAdmin(t.url);
    const key = await request(t.url).post('/api/v1/api-keys').set(masterIn(tenantId)).send({ name: 'k' });
    expect(key.status).toBe(201);
    for (const stream of [false, true])
      await request(t.url)
        .post('/v1/chat/completions')
        .set('Authorization', `Bearer ${key.body.key}`)
        .send({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'Hi' }] })
        .expect(200);
    await t.close();
    await new Promise((r) => setTimeout(r, 300)); // sockets finish closing
    const left = Object.entries(resources())
      .filter(([type, n]) => n > (before[type] ?? 0))
      .map(([type, n]) => `${type} x${n - (before[type] ?? 0)}`);
    expect(left).toEqual([]);
  });
});
