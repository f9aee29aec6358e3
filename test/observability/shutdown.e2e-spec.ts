import { Agent, request as httpRequest } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase, JWT_SECRET, MASTER_KEY } from '../harness/app';
import { withClient } from '../harness/servers';
import { buildGateway, GatewayProcess, startGateway } from '../harness/gateway-process';
import { jsonLines, logFilePath, when, wired } from './capture';

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

/** JSON over loopback with the master key (the subprocess is not reachable through supertest's app helpers). */
async function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${MASTER_KEY}`, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A mock model whose stream takes about 3 s (30 words, 100 ms apart). */
function slowModelsFile(): string {
  const reply = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
  const doc = {
    models: {
      'mock-long': {
        deployments: [
          {
            provider: 'mock',
            pricing: { input_per_million: 1, output_per_million: 2 },
            options: { reply, chunk_delay_ms: 100 },
          },
        ],
      },
    },
  };
  const file = join(mkdtempSync(join(tmpdir(), 'gw-models-')), 'models.json');
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

const describeWithCompletions = when(wired.completions, 'the completions route').describe;
const itMetered = when(wired.meteredCompletions, 'completions metered by the quota lib (ledger)').it;

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

    // Every line is JSON but the start banner's (indented plain text, for the operator's eyes).
    const lines = jsonLines(gw.stdout().replace(/^ {2}.*$/gm, ''));
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

  describeWithCompletions('during an active stream', () => {
    let databaseUrl = '';
    let key = '';
    let requestId = '';
    let body = '';
    let res: { status: number; complete: boolean } | undefined;
    let code: number | string | undefined;
    let took = 0;
    let refusedNew = false;

    beforeAll(async () => {
      databaseUrl = await createDatabase();
      gw = await startGateway({
        DATABASE_URL: databaseUrl,
        SHUTDOWN_GRACE_MS: '10000',
        MODELS_FILE: slowModelsFile(),
      });
      const tenant = await call(gw.url, 'POST', '/api/v1/tenants', { name: 'sigterm' });
      expect(tenant.status).toBe(201);
      const created = await call(
        gw.url,
        'POST',
        '/api/v1/api-keys',
        { name: 'stream' },
        {
          'x-tenant-id': String(tenant.body.id),
        },
      );
      expect(created.status).toBe(201);
      key = String(created.body.key);
      requestId = `sigterm-stream-${Date.now()}`;

      let firstChunk!: () => void;
      const started = new Promise<void>((r) => (firstChunk = r));
      const finished = new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
        const req = httpRequest(
          `${gw!.url}/v1/chat/completions`,
          {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              authorization: `Bearer ${key}`,
              'x-request-id': requestId,
            },
          },
          (r) => {
            r.on('data', (c: Buffer) => {
              body += c.toString();
              firstChunk();
            });
            r.on('end', () => resolve({ status: r.statusCode!, complete: r.complete }));
            r.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(
          JSON.stringify({ model: 'mock-long', stream: true, messages: [{ role: 'user', content: 'go' }] }),
        );
      });
      await started;

      const sent = Date.now();
      gw.proc.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 200));
      refusedNew = await get(gw.url, '/health/live').then(
        () => false,
        (e: Error) => /ECONNREFUSED/.test(String(e)),
      );
      res = await finished;
      code = await gw.exited;
      took = Date.now() - sent;
    }, 60000);

    it('new connections are refused at once, the stream runs to its end', () => {
      expect(refusedNew).toBe(true);
      expect(res).toEqual({ status: 200, complete: true });
      expect(body).toContain('word29');
      expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    });

    it('the process exits 0 after the stream and within SHUTDOWN_GRACE_MS', () => {
      expect(code).toBe(0);
      expect(took).toBeGreaterThan(1000);
      expect(took).toBeLessThan(10000);
      expect(gw!.stdout()).not.toContain(key);
    });

    itMetered("that request's usage_records row exists (the ledger flushed on shutdown)", async () => {
      const rows = await withClient(databaseUrl, (c) =>
        c.query('SELECT status, completion_tokens FROM usage_records WHERE request_id = $1', [requestId]),
      );
      expect(rows.rowCount).toBe(1);
      expect(rows.rows[0].completion_tokens).toBeGreaterThan(0);
    });
  });
});
