import request from 'supertest';
import type { ChildProcess } from 'node:child_process';
import { EmbeddedPostgres } from '@app/database';
import { createDatabase, createTestApp, TestApp } from '../harness/app';
import { hasRedisServer, startPostgres, startRedis } from '../harness/servers';

/** Polls /health/ready until it answers `status`; returns how long that took (ms), or fails after `withinMs`. */
async function readyBecomes(url: string, status: number, withinMs: number): Promise<number> {
  const started = Date.now();
  let last = 0;
  for (let i = 0; Date.now() - started < withinMs && i < 200; i++) {
    last = (await request(url).get('/health/ready')).status;
    if (last === status) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`/health/ready still ${last} after ${withinMs} ms (wanted ${status})`);
}

describe('/health/ready follows PostgreSQL', () => {
  let pg: EmbeddedPostgres;
  let t: TestApp;
  beforeAll(async () => {
    const server = await startPostgres();
    pg = server.pg;
    // The gateway migrates its own (empty) database on start.
    t = await createTestApp({ databaseUrl: server.adminUrl, env: { MIGRATIONS_RUN: 'true' } });
  });
  afterAll(async () => {
    await t?.close();
    await pg?.stop();
  });

  it('is 200, 503 within 2 s of PostgreSQL stopping, 200 again within 5 s of it starting', async () => {
    const up = await request(t.url).get('/health/ready').expect(200);
    expect(up.body.info.postgres.status).toBe('up');
    await request(t.url).get('/health/live').expect(200);

    await pg.stop();
    expect(await readyBecomes(t.url, 503, 2000)).toBeLessThan(2000);
    const down = await request(t.url).get('/health/ready').expect(503);
    expect(down.body.details.postgres.status).toBe('down');
    expect(down.body.error).toMatchObject({
      code: 'not_ready',
      message: expect.stringContaining('postgres'),
    });
    // Liveness is about the process, not its dependencies.
    await request(t.url).get('/health/live').expect(200);

    await pg.start();
    expect(await readyBecomes(t.url, 200, 5000)).toBeLessThan(5000);
    // And the app really uses the database again.
    const tenants = await request(t.url)
      .get('/api/v1/tenants')
      .set('Authorization', `Bearer ${t.config.masterKey}`)
      .expect(200);
    expect(tenants.body).toBeDefined();
  });
});

(hasRedisServer() ? describe : describe.skip)('/health/ready follows the configured Redis', () => {
  let redis: { proc: ChildProcess; url: string; port: number };
  let t: TestApp;
  beforeAll(async () => {
    redis = await startRedis();
    t = await createTestApp({ databaseUrl: await createDatabase(), env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    await t?.close();
    redis?.proc.kill('SIGKILL');
  });

  it('is 200, 503 within 2 s of Redis stopping, 200 again within 5 s of it starting', async () => {
    const up = await request(t.url).get('/health/ready').expect(200);
    expect(up.body.info.redis.status).toBe('up');

    const exited = new Promise((r) => redis.proc.once('exit', r));
    redis.proc.kill('SIGTERM');
    await exited;
    expect(await readyBecomes(t.url, 503, 2000)).toBeLessThan(2000);
    const down = await request(t.url).get('/health/ready').expect(503);
    expect(down.body.details.redis.status).toBe('down');
    expect(down.body.details.postgres.status).toBe('up');
    expect(down.body.error.message).toMatch(/redis/);

    redis = await startRedis(redis.port);
    expect(await readyBecomes(t.url, 200, 5000)).toBeLessThan(5000);
  });
});
