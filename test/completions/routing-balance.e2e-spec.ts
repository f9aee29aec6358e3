import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeUpstream, fakeOpenAi } from './fake-upstreams';
import { serviceHarness, ServiceHarness } from './harness';

/** Load balancing among the healthy deployments of a model (README "Models and providers"). */
describe('routing: load balancing', () => {
  let x: FakeUpstream;
  let y: FakeUpstream;
  let h: ServiceHarness;
  const price = { input_per_million: 1, output_per_million: 2 };
  const openai = (url: string, model: string) => ({
    provider: 'openai',
    model,
    base_url: `${url}/v1`,
    pricing: price,
  });

  beforeAll(async () => {
    x = await fakeOpenAi();
    y = await fakeOpenAi();
    const file = join(mkdtempSync(join(tmpdir(), 'gw-routing-')), 'models.json');
    writeFileSync(
      file,
      JSON.stringify({
        models: {
          'gpt-weighted': {
            strategy: 'weighted',
            deployments: [
              { ...openai(x.url, 'echo'), weight: 3 },
              { ...openai(y.url, 'echo'), weight: 1 },
            ],
          },
          'gpt-least-busy': {
            strategy: 'least-busy',
            deployments: [openai(x.url, 'late-1000'), openai(y.url, 'echo')],
          },
        },
      }),
    );
    h = await serviceHarness(file);
  });
  afterAll(async () => {
    await h.close();
    await x.close();
    await y.close();
  });
  beforeEach(() => {
    h.meter.reset();
    x.requests.length = 0;
    y.requests.length = 0;
  });

  async function run(model: string, n: number, concurrency: number): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < n) {
          const res = await fetch(`${h.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 }),
          });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
        }
      }),
    );
  }

  // 4,000 real requests through the service and two fake upstreams: room for a loaded machine.
  it('weighted 3:1 over 4,000 requests: shares within 3 points of 75/25', async () => {
    await run('gpt-weighted', 4000, 16);
    expect(x.requests.length + y.requests.length).toBe(4000);
    expect(Math.abs(x.requests.length / 4000 - 0.75)).toBeLessThan(0.03);
  }, 120_000);

  it('least-busy with one slow deployment sends most requests to the fast one', async () => {
    // a random or round-robin choice would send half of them to the slow one
    await run('gpt-least-busy', 40, 4);
    expect(y.requests.length + x.requests.length).toBe(40);
    expect(y.requests.length / 40).toBeGreaterThan(0.75);
  });
});
