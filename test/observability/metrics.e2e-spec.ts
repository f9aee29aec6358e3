import request from 'supertest';
import { createTestApp, TestApp } from '../harness/app';
import { sample } from './capture';

describe('/metrics', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('serves the Prometheus exposition, counting requests by route pattern', async () => {
    await request(t.url).get('/health/live').expect(200);
    await request(t.url).get('/health/live').expect(200);
    await request(t.url).get('/api/v1/users/00000000-0000-0000-0000-000000000000').expect(401);
    await request(t.url).get('/no/such/route/123').expect(404);
    const res = await request(t.url).get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.text;
    expect(sample(text, 'gateway_http_requests_total{route="/health/live",method="GET",status="200"}')).toBe(
      2,
    );
    expect(
      sample(text, 'gateway_http_requests_total{route="/api/v1/users/:id",method="GET",status="401"}'),
    ).toBe(1);
    expect(sample(text, 'gateway_http_requests_total{route="unmatched",method="GET",status="404"}')).toBe(1);
    expect(text).not.toContain('/no/such/route');
    expect(text).not.toContain('00000000-0000');
    expect(
      sample(
        text,
        'gateway_http_request_duration_seconds_count{route="/health/live",method="GET",status="200"}',
      ),
    ).toBe(2);
    expect(sample(text, 'gateway_auth_path_total{path="lru_hit"}')).toBe(0);
  });
});

describe('/metrics with METRICS_TOKEN', () => {
  let t: TestApp;
  const token = 'metrics-token-abcdef0123456789';
  beforeAll(async () => {
    t = await createTestApp({ env: { METRICS_TOKEN: token } });
  });
  afterAll(() => t.close());

  it('refuses without or with a wrong bearer, serves with the right one', async () => {
    const none = await request(t.url).get('/metrics').expect(401);
    expect(none.body.error.type).toBe('authentication_error');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    await request(t.url).get('/metrics').set('Authorization', `Bearer ${token}x`).expect(401);
    await request(t.url).get('/metrics').set('Authorization', token).expect(401);
    const ok = await request(t.url).get('/metrics').set('Authorization', `Bearer ${token}`).expect(200);
    expect(ok.text).toContain('gateway_http_requests_total');
  });
});
