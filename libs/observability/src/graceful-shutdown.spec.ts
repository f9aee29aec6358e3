import { Agent, createServer, get, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants } from 'node:os';
import { GracefulShutdown } from './graceful-shutdown';

const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port })),
  );
}

function fetchText(
  port: number,
  path: string,
  agent?: Agent,
): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, connection: res.headers.connection }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

describe('GracefulShutdown', () => {
  it('stops accepting, lets a streaming request finish, closes idle keep-alive sockets, then closes the app', async () => {
    const events: string[] = [];
    const { server, port } = await listen((req, res) => {
      if (req.url === '/slow') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let n = 0;
        const t = setInterval(() => {
          res.write(`data: ${n}\n\n`);
          if (++n === 5) {
            clearInterval(t);
            events.push('stream ended');
            res.end('data: [DONE]\n\n');
          }
        }, 60);
      } else res.end('ok');
    });
    const gs = new GracefulShutdown(server, {
      graceMs: 5000,
      logger,
      onDraining: () => events.push('draining'),
      closeApp: async () => {
        events.push('app closed');
      },
    });
    const keepAlive = new Agent({ keepAlive: true });
    expect((await fetchText(port, '/fast', keepAlive)).status).toBe(200); // leaves an idle keep-alive socket
    const slow = fetchText(port, '/slow');
    await sleep(50);

    expect(gs.inFlight).toBe(1);
    const started = Date.now();
    const code = gs.shutdown('test');
    await sleep(20);
    await expect(fetchText(port, '/fast')).rejects.toThrow(/ECONNREFUSED/);

    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.body).toContain('data: 4');
    expect(res.body).toContain('[DONE]');
    expect(await code).toBe(0);
    expect(events).toEqual(['draining', 'stream ended', 'app closed']);
    expect(Date.now() - started).toBeLessThan(2000); // the idle keep-alive socket did not hold it open
    expect(server.listening).toBe(false);
    keepAlive.destroy();
  });

  it('cuts requests still running when the grace period is over, and still closes the app', async () => {
    const { server, port } = await listen((_req, res) => {
      res.writeHead(200);
      res.write('partial');
    }); // never ends
    let closed = false;
    const gs = new GracefulShutdown(server, {
      graceMs: 200,
      logger,
      closeApp: async () => {
        closed = true;
      },
    });
    const hanging = fetchText(port, '/hang').catch((e: Error) => e);
    await sleep(50);
    const started = Date.now();
    expect(await gs.shutdown()).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(closed).toBe(true);
    expect(String(await hanging)).toMatch(/Error: (aborted|socket hang up)|ECONNRESET/);
  });

  it('exits 1 when closing the app fails or hangs', async () => {
    const a = await listen((_req, res) => res.end());
    const failing = new GracefulShutdown(a.server, {
      graceMs: 100,
      logger,
      closeApp: () => Promise.reject(new Error('flush failed')),
    });
    expect(await failing.shutdown()).toBe(1);
    const b = await listen((_req, res) => res.end());
    const hanging = new GracefulShutdown(b.server, {
      graceMs: 100,
      closeTimeoutMs: 100,
      logger,
      closeApp: () => new Promise(() => undefined),
    });
    expect(await hanging.shutdown()).toBe(1);
  });

  it('a second signal exits at once', async () => {
    const { server } = await listen((_req, res) => res.end());
    const exits: number[] = [];
    let release!: () => void;
    const gs = new GracefulShutdown(server, {
      graceMs: 100,
      logger,
      signals: ['SIGUSR2'],
      samePressMs: 100,
      exit: (c) => exits.push(c),
      closeApp: () => new Promise<void>((r) => (release = r)),
    }).install();
    process.emit('SIGUSR2');
    process.emit('SIGUSR2'); // the same press delivered twice (terminal and npm): not a second signal
    await sleep(150);
    expect(exits).toEqual([]);
    process.emit('SIGUSR2');
    expect(exits).toEqual([128 + constants.signals.SIGUSR2]);
    release();
    await gs.shutdown();
    await sleep(10);
    expect(exits).toEqual([128 + constants.signals.SIGUSR2, 0]);
    expect(process.listenerCount('SIGUSR2')).toBe(0);
  });
});
