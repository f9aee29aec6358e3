import { Agent, get } from 'node:http';
import { createTestApp, TestApp } from '../harness/app';

/** One GET on a kept-alive connection: the Keep-Alive header the gateway answers with. */
function keepAliveHeader(url: string, agent: Agent): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    get(`${url}/health/live`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.headers['keep-alive'] as string | undefined));
    }).on('error', reject);
  });
}

/**
 * Idle client connections stay open HTTP_KEEP_ALIVE_TIMEOUT_MS (default 65 s, above an AWS
 * ALB's 60 s): with Node's 5 s, the gateway closed connections a proxy or a keep-alive client
 * was about to reuse (the reliability suite saw "socket hang up" between load phases).
 */
describe('HTTP keep-alive', () => {
  let apps: TestApp[] = [];
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    apps = [];
  });

  it('keeps idle connections 65 s by default, HTTP_KEEP_ALIVE_TIMEOUT_MS when set', async () => {
    const byDefault = await createTestApp();
    const short = await createTestApp({ env: { HTTP_KEEP_ALIVE_TIMEOUT_MS: '7000' } });
    apps = [byDefault, short];
    const agent = new Agent({ keepAlive: true });
    try {
      expect(await keepAliveHeader(byDefault.url, agent)).toBe('timeout=65');
      expect(await keepAliveHeader(short.url, agent)).toBe('timeout=7');
    } finally {
      agent.destroy();
    }
  });
});
