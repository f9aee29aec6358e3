import { Agent, request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { createDatabase, JWT_SECRET, MASTER_KEY } from '../harness/app';
import { buildGateway, GatewayProcess, startGateway } from './gateway-process';
import { jsonLines, logFilePath } from './capture';

function get(url: string, path: string, agent?: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('SIGTERM on a real gateway process', () => {
  let gw: GatewayProcess | undefined;
  beforeAll(() => buildGateway(), 200000);
  afterEach(() => {
    if (gw && gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
  });

  it('exits 0 well within SHUTDOWN_GRACE_MS although a keep-alive socket is open; logs hold no secret', async () => {
    const logFile = logFilePath();
    gw = await startGateway({
      DATABASE_URL: await createDatabase(),
      SHUTDOWN_GRACE_MS: '8000',
      LOG_FILE: logFile,
    });
    const keepAlive = new Agent({ keepAlive: true });
    expect((await get(gw.url, '/health/ready', keepAlive)).status).toBe(200);
    expect((await get(gw.url, '/api/v1/tenants', keepAlive)).status).toBe(401); // the socket stays open, idle

    const sent = Date.now();
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    const took = Date.now() - sent;
    expect(took).toBeLessThan(3000); // the idle keep-alive socket did not hold it for the 8 s grace
    await expect(get(gw.url, '/health/live')).rejects.toThrow(/ECONNREFUSED/);
    keepAlive.destroy();

    const lines = jsonLines(gw.stdout().replace(/^llm-gateway listening on .*$/m, ''));
    const msgs = lines.map((l) => String(l.msg));
    expect(msgs.some((m) => /SIGTERM: stopped accepting connections/.test(m))).toBe(true);
    expect(msgs.some((m) => /shutdown complete/.test(m))).toBe(true);
    for (const secret of [MASTER_KEY, JWT_SECRET]) expect(gw.stdout() + gw.stderr()).not.toContain(secret);
    expect(readFileSync(logFile, 'utf8')).toContain('shutdown complete');
  });

  it('a second signal forces the exit', async () => {
    gw = await startGateway({ DATABASE_URL: await createDatabase(), SHUTDOWN_GRACE_MS: '10000' });
    // An in-flight request that does not end keeps the first SIGTERM waiting for the grace period.
    const hanging = httpRequest(`${gw.url}/api/v1/tenants`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '100' },
    });
    hanging.on('error', () => undefined);
    hanging.write('{');
    await new Promise((r) => setTimeout(r, 200));
    gw.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    expect(gw.proc.exitCode).toBeNull(); // still draining
    const sent = Date.now();
    gw.proc.kill('SIGINT');
    expect(await gw.exited).toBe(130);
    expect(Date.now() - sent).toBeLessThan(2000);
    hanging.destroy();
  });
});
