import request from 'supertest';
import { createTestApp, describeWithRedis, TestApp } from '../harness/app';

describeWithRedis('readiness with Redis configured', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ redis: true });
  });
  afterAll(() => t.close());

  it('reports PostgreSQL and Redis up', async () => {
    const res = await request(t.url).get('/health/ready').expect(200);
    expect(res.body.info.postgres.status).toBe('up');
    expect(res.body.info.redis.status).toBe('up');
  });
});
