import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { MemoryHealthStore, RedisHealthStore } from '@app/completions';
import { redisUrl } from '../harness/app';
import {
  FAKE_TEXT,
  FakeUpstream,
  fakeOpenAi,
  switchableUpstream,
  SwitchableUpstream,
} from './fake-upstreams';
import { serviceHarness, ServiceHarness, sseData } from './harness';

/**
 * Routing that survives providers (README "Models and providers"): fallover on 429 with the
 * provider's Retry-After, cooldown and probe, shared through Redis, load balancing, retries,
 * timeouts fit for LLMs. Fake upstreams are real HTTP servers on 127.0.0.1.
 */
const price = { input_per_million: 1, output_per_million: 2 };
const openai = (url: string, model: string, extra: Record<string, unknown> = {}) => ({
  provider: 'openai',
  model,
  base_url: `${url}/v1`,
  pricing: price,
  ...extra,
});
function modelsFile(models: Record<string, unknown>): string {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-routing-')), 'models.json');
  writeFileSync(file, JSON.stringify({ models }));
  return file;
}
const hi = [{ role: 'user', content: 'Say hello' }];

function client(h: ServiceHarness) {
  const post = async (model: string, extra: Record<string, unknown> = {}) => {
    const t0 = performance.now();
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: hi, ...extra }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, ms: performance.now() - t0 };
  };
  return post;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('routing: fallover on 429 with the provider Retry-After', () => {
  let up: FakeUpstream;
  let h: ServiceHarness;
  let post: ReturnType<typeof client>;
  const models = () => up.requests.map((r) => r.body.model);

  beforeAll(async () => {
    up = await fakeOpenAi();
    h = await serviceHarness(
      modelsFile({
        'gpt-ra': { deployments: [openai(up.url, 'ratelimit-2'), openai(up.url, 'echo')] },
        'gpt-ra-all': { deployments: [openai(up.url, 'ratelimit-5'), openai(up.url, 'ratelimit-2')] },
      }),
    );
    post = client(h);
  });
  afterAll(async () => {
    await h.close();
    await up.close();
  });

  it('every request is served by the second; after 2 s the first is tried again; one charge per request', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await post('gpt-ra');
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text).choices[0].message.content).toBe(FAKE_TEXT);
    }
    // the first deployment was asked once, then rested for its Retry-After
    expect(models()).toEqual(['ratelimit-2', 'echo', 'echo', 'echo', 'echo', 'echo']);
    expect(h.meter.admitted).toHaveLength(5);
    expect(h.meter.settled).toHaveLength(5);
    expect(h.meter.released).toHaveLength(0);
    expect(h.meter.settled.map((s) => [s.meta.deployment, s.meta.attempts])).toEqual([
      ['gpt-ra#1', 2],
      ['gpt-ra#1', 1],
      ['gpt-ra#1', 1],
      ['gpt-ra#1', 1],
      ['gpt-ra#1', 1],
    ]);
    expect(h.router.state('gpt-ra#0')).toBe('cooldown');

    await sleep(2100);
    up.requests.length = 0;
    const r = await post('gpt-ra');
    expect(r.status).toBe(200);
    // probed again after 2 s (still 429 here), the second served
    expect(models()).toEqual(['ratelimit-2', 'echo']);
    expect(h.meter.settled).toHaveLength(6);
  });

  it('every deployment refused: 429 with the shortest Retry-After, nothing charged', async () => {
    h.meter.reset();
    up.requests.length = 0;
    const r = await post('gpt-ra-all');
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('2');
    expect(JSON.parse(r.text).error).toMatchObject({ code: 'rate_limit_exceeded' });
    // at once again: both rest, no upstream call, still the shortest wait
    const again = await post('gpt-ra-all');
    expect(again.status).toBe(429);
    expect(Number(again.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    expect(models()).toEqual(['ratelimit-5', 'ratelimit-2']);
    expect(h.meter.released).toHaveLength(2);
    expect(h.meter.settled).toHaveLength(0);
  });
});

describe('routing: cooldown and probe of a failing deployment', () => {
  let a: SwitchableUpstream;
  let b: FakeUpstream;
  let h: ServiceHarness;
  let post: ReturnType<typeof client>;
  const COOLDOWN = 1500;

  beforeAll(async () => {
    a = await switchableUpstream();
    b = await fakeOpenAi();
    h = await serviceHarness(
      modelsFile({
        // a hanging non-streamed answer is bounded by the deployment's total_ms
        'gpt-cool': {
          deployments: [openai(a.url, 'echo', { timeouts: { total_ms: 400 } }), openai(b.url, 'echo')],
        },
      }),
      { ROUTING_FAILURE_THRESHOLD: '3', ROUTING_COOLDOWN_MS: String(COOLDOWN), UPSTREAM_RETRIES: '0' },
    );
    post = client(h);
  });
  afterAll(async () => {
    await h.close();
    await a.close();
    await b.close();
  });

  it('refused, then hanging: skipped after the threshold (latency measured), one probe per cooldown, back when it recovers', async () => {
    await a.set('down');
    for (let i = 0; i < 5; i++) expect((await post('gpt-cool')).status).toBe(200);
    // 3 refusals, then skipped
    expect(h.meter.settled.map((s) => s.meta.attempts)).toEqual([2, 2, 2, 1, 1]);
    expect(h.router.state('gpt-cool#0')).toBe('cooldown');
    expect(await h.metrics.render()).toMatch(/gateway_deployment_state\{deployment="gpt-cool#0"\} 2/);
    const ready = (await h.readiness.checks.find((c) => c.name === 'deployments')!.check()) as any;
    expect(ready.state).toBe('degraded');
    expect(ready.models['gpt-cool']).toEqual({ inRotation: 1, total: 2, resting: ['gpt-cool#0'] });

    // now hanging: after the cooldown one request probes it and pays the bound; the others do not
    await a.set('hang');
    await sleep(COOLDOWN + 50);
    expect(h.router.state('gpt-cool#0')).toBe('probe');
    const burst = await Promise.all(Array.from({ length: 8 }, () => post('gpt-cool')));
    expect(burst.every((r) => r.status === 200)).toBe(true);
    expect(a.requests).toHaveLength(1); // one probe per cooldown
    const slow = burst.filter((r) => r.ms >= 380);
    expect(slow).toHaveLength(1);
    // the probe failed: a new cooldown at once (no threshold for a failed probe); latency normal
    expect(h.router.state('gpt-cool#0')).toBe('cooldown');
    const after: number[] = [];
    for (let i = 0; i < 5; i++) after.push((await post('gpt-cool')).ms);
    expect(Math.max(...after)).toBeLessThan(200);
    expect(a.requests).toHaveLength(1);

    // recovered: the next probe succeeds and it is back in rotation (order: first again)
    await a.set('ok');
    await sleep(COOLDOWN + 50);
    h.meter.reset();
    for (let i = 0; i < 3; i++) expect((await post('gpt-cool')).status).toBe(200);
    expect(h.meter.settled.map((s) => s.meta.deployment)).toEqual(['gpt-cool#0', 'gpt-cool#0', 'gpt-cool#0']);
    expect(h.router.state('gpt-cool#0')).toBe('healthy');
    expect(await h.metrics.render()).toMatch(/gateway_deployment_state\{deployment="gpt-cool#0"\} 0/);
  });
});

(redisUrl() ? describe : describe.skip)('routing: two instances agree through Redis', () => {
  let a: SwitchableUpstream;
  let b: FakeUpstream;
  let h1: ServiceHarness;
  let h2: ServiceHarness;
  let r1: Redis;
  let r2: Redis;
  // unique names: the test Redis is shared by the run's files
  const model = `gpt-shared-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    a = await switchableUpstream();
    b = await fakeOpenAi();
    // the first answers after 300 ms: its probe is still in flight while the other requests plan
    // (once it has answered, a request may use it at once: the probe is not the only one then)
    const file = modelsFile({ [model]: { deployments: [openai(a.url, 'late-300'), openai(b.url, 'echo')] } });
    const env = {
      ROUTING_FAILURE_THRESHOLD: '2',
      ROUTING_COOLDOWN_MS: '1000',
      ROUTING_SYNC_MS: '100',
      UPSTREAM_RETRIES: '0',
    };
    r1 = new Redis(redisUrl()!);
    r2 = new Redis(redisUrl()!);
    h1 = await serviceHarness(file, env, r1);
    h2 = await serviceHarness(file, env, r2);
  });
  afterAll(async () => {
    await h1.close();
    await h2.close();
    await r1.hdel('routing:deployments', `${model}#0`, `${model}#1`);
    r1.disconnect();
    r2.disconnect();
    await a.close();
    await b.close();
  });

  it('one instance trips the cooldown, the other skips the deployment too; one probe across both', async () => {
    await a.set('down');
    const p1 = client(h1);
    const p2 = client(h2);
    for (let i = 0; i < 2; i++) expect((await p1(model)).status).toBe(200);
    expect(h1.router.state(`${model}#0`)).toBe('cooldown');
    await sleep(250); // > ROUTING_SYNC_MS
    expect(h2.router.state(`${model}#0`)).toBe('cooldown');
    expect((await p2(model)).status).toBe(200);
    expect(h2.meter.settled[0].meta).toMatchObject({ deployment: `${model}#1`, attempts: 1 });

    // after the cooldown, concurrent requests on both instances: exactly one probe
    await a.set('ok');
    await sleep(1100);
    await Promise.all([
      ...Array.from({ length: 5 }, () => p1(model)),
      ...Array.from({ length: 5 }, () => p2(model)),
    ]);
    expect(a.requests).toHaveLength(1);
    await sleep(250);
    expect(h1.router.state(`${model}#0`)).toBe('healthy');
    expect(h2.router.state(`${model}#0`)).toBe('healthy');
  });

  it('a probe already answered on the other instance: the next request uses the deployment at once', async () => {
    h2.router.onApplicationShutdown(); // no periodic sync: h2 learns only what a request asks
    await a.set('down');
    const p1 = client(h1);
    const p2 = client(h2);
    for (let i = 0; i < 2; i++) expect((await p1(model)).status).toBe(200);
    await h2.router.refresh();
    expect(h2.router.state(`${model}#0`)).toBe('cooldown');
    await a.set('ok');
    await sleep(1100);
    expect((await p1(model)).status).toBe(200); // h1's probe answers: healthy in Redis
    expect(h1.router.state(`${model}#0`)).toBe('healthy');
    expect(h2.router.state(`${model}#0`)).toBe('probe'); // h2's copy is older
    h2.meter.reset();
    expect((await p2(model)).status).toBe(200);
    // not refused or sent elsewhere because the probe lease was gone: the deployment is back
    expect(h2.meter.settled[0].meta).toMatchObject({ deployment: `${model}#0` });
  });

  it('the Redis store and the in-process store make the same transitions', async () => {
    const key = `routing:test:{${randomBytes(4).toString('hex')}}`;
    const redis = new RedisHealthStore(r1, key);
    const memory = new MemoryHealthStore();
    const policy = { threshold: 2, windowMs: 1000, cooldownMs: 500 };
    const steps = async (s: typeof redis | typeof memory) => [
      await s.failure('d', 1000, policy),
      await s.failure('d', 1500, policy), // 2 in the window: cooldown until 2000
      await s.failure('d', 1600, policy), // resting: not counted
      await s.probe('d', 1900, 100), // not yet
      await s.probe('d', 2000, 100), // granted
      await s.probe('d', 2050, 100), // another holds it
      await s.failure('d', 2055, policy, 1700), // started before the rest ended: not counted
      await s.failure('d', 2060, policy), // failed probe: cooldown again
      await s.retryAfter('d', 2100, 5000),
      await s.probe('d', 7100, 100),
      await s.success('d'),
      [...(await s.all()).entries()],
      await s.failure('e', 0, policy),
      await s.failure('e', 2000, policy), // window over: counts from 1
    ];
    expect(await steps(redis)).toEqual(await steps(memory));
    await r1.del(key);
  });
});

describe('routing: retries and timeouts that fit LLMs', () => {
  let up: FakeUpstream;
  let h: ServiceHarness;
  let post: ReturnType<typeof client>;
  const models = () => up.requests.map((r) => r.body.model);

  beforeAll(async () => {
    up = await fakeOpenAi();
    h = await serviceHarness(
      modelsFile({
        'gpt-late': { deployments: [openai(up.url, 'late-3000')] },
        'gpt-flaky': { deployments: [openai(up.url, 'flaky-2')] },
        'gpt-die': { deployments: [openai(up.url, 'die-mid-stream'), openai(up.url, 'echo')] },
        'gpt-die-first': { deployments: [openai(up.url, 'die-before-first'), openai(up.url, 'echo')] },
        'gpt-silent': { deployments: [openai(up.url, 'hang-mid-stream')] },
      }),
      // the stream bounds are short; the total is the default (10 min)
      {
        UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '1000',
        UPSTREAM_STREAM_IDLE_TIMEOUT_MS: '1000',
        UPSTREAM_TOTAL_TIMEOUT_MS: '600000',
      },
    );
    post = client(h);
  });
  afterAll(async () => {
    await h.close();
    await up.close();
  });
  beforeEach(() => {
    h.meter.reset();
    up.requests.length = 0;
  });

  it('a non-streamed answer that takes longer than the stream first-byte timeout arrives, charged once', async () => {
    const r = await post('gpt-late');
    expect(r.status).toBe(200);
    expect(r.ms).toBeGreaterThanOrEqual(2900);
    expect(JSON.parse(r.text).choices[0].message.content).toBe(FAKE_TEXT);
    expect(h.meter.admitted).toHaveLength(1);
    expect(h.meter.settled).toHaveLength(1);
    expect(h.meter.settled[0].meta.attempts).toBe(1);
  });

  it('the same answer streamed is cut by the first-byte timeout (504 before any byte)', async () => {
    const r = await post('gpt-late', { stream: true });
    expect(r.status).toBe(504);
    expect(r.ms).toBeLessThan(2000);
    expect(JSON.parse(r.text).error.code).toBe('upstream_timeout');
    expect(h.meter.released).toHaveLength(1);
  });

  it('a stream silent for longer than the idle timeout is cut with an error event', async () => {
    const r = await post('gpt-silent', { stream: true });
    expect(r.status).toBe(200);
    const data = sseData(r.text);
    expect(JSON.parse(data.at(-2)!).error).toMatchObject({ code: 'upstream_timeout' });
    expect(JSON.parse(data.at(-2)!).error.message).toMatch(/silent for more than 1000 ms/);
    expect(r.ms).toBeGreaterThanOrEqual(950);
    expect(r.ms).toBeLessThan(2500);
  });

  it('503 twice then an answer: retried on the same deployment with back-off, one charge', async () => {
    const r = await post('gpt-flaky');
    expect(r.status).toBe(200);
    expect(models()).toEqual(['flaky-2', 'flaky-2', 'flaky-2']);
    expect(h.meter.admitted).toHaveLength(1);
    expect(h.meter.settled).toHaveLength(1);
    expect(h.meter.settled[0].meta).toMatchObject({ deployment: 'gpt-flaky#0', attempts: 3 });
  });

  it('a stream that fails after its first chunk is not retried: error event, charged what was streamed', async () => {
    const r = await post('gpt-die', { stream: true });
    expect(r.status).toBe(200);
    const data = sseData(r.text);
    expect(data.at(-1)).toBe('[DONE]');
    expect(JSON.parse(data.at(-2)!).error.type).toBe('server_error');
    expect(models()).toEqual(['die-mid-stream']);
    const s = await h.meter.nth('settled');
    expect(s.meta).toMatchObject({ status: 'upstream_error', deployment: 'gpt-die#0', attempts: 1 });
    expect(s.usage.completionTokens).toBeGreaterThan(0);
    expect(h.meter.released).toHaveLength(0);
  });

  it('a stream that drops before its first chunk (nothing sent to the client) is retried, then falls over', async () => {
    const r = await post('gpt-die-first', { stream: true });
    expect(r.status).toBe(200);
    expect(sseData(r.text).at(-1)).toBe('[DONE]');
    // a dropped connection is transient: retried twice (UPSTREAM_RETRIES), then the next serves
    expect(models()).toEqual(['die-before-first', 'die-before-first', 'die-before-first', 'echo']);
    expect((await h.meter.nth('settled')).meta).toMatchObject({ deployment: 'gpt-die-first#1', attempts: 4 });
  });
});

describe('routing: a deployment at max_connections is skipped, never queued', () => {
  let up: FakeUpstream;
  let h: ServiceHarness;
  let post: ReturnType<typeof client>;

  beforeAll(async () => {
    up = await fakeOpenAi();
    h = await serviceHarness(
      modelsFile({
        'gpt-sat': { deployments: [openai(up.url, 'late-800', { max_connections: 2 })] },
        'gpt-sat-fall': {
          deployments: [openai(up.url, 'late-800', { max_connections: 2 }), openai(up.url, 'echo')],
        },
      }),
    );
    post = client(h);
  });
  afterAll(async () => {
    await h.close();
    await up.close();
  });

  it('the third concurrent request gets 503 upstream_saturated at once (Retry-After), not a place in a queue', async () => {
    up.requests.length = 0;
    const [a, b, c] = await Promise.all([
      post('gpt-sat'),
      post('gpt-sat'),
      sleep(100).then(() => post('gpt-sat')),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(c.status).toBe(503);
    expect(JSON.parse(c.text).error).toMatchObject({ code: 'upstream_saturated', type: 'server_error' });
    expect(c.headers.get('retry-after')).toBe('1');
    expect(c.ms).toBeLessThan(500); // answered before the two in flight (800 ms) ended
    expect(up.requests).toHaveLength(2);
    // released: nothing was charged for it
    expect(h.meter.settled.map((s) => s.meta.status).filter((s) => s !== 'success')).toEqual([]);
    expect(await h.metrics.render()).toMatch(
      /gateway_deployment_attempts_total\{deployment="gpt-sat#0",outcome="saturated"\} 1/,
    );
    // not a failure of the deployment: still in rotation
    expect(h.router.state('gpt-sat#0')).toBe('healthy');
  });

  it('with a second deployment the third request is served there at once', async () => {
    h.meter.reset();
    const res = await Promise.all([
      post('gpt-sat-fall'),
      post('gpt-sat-fall'),
      sleep(100).then(() => post('gpt-sat-fall')),
    ]);
    expect(res.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(res[2].ms).toBeLessThan(500);
    expect(h.meter.settled.map((s) => s.meta.deployment).sort()).toEqual([
      'gpt-sat-fall#0',
      'gpt-sat-fall#0',
      'gpt-sat-fall#1',
    ]);
  });
});
