/**
 * The floor for bench:proxy: a bare node:http pass-through proxy, what any proxy must pay.
 * Forwards method, path, headers and body to the target, pipes the answer back; one
 * keep-alive agent. Run as its own process (like the gateway):
 *   node -r ts-node/register bench/bare-proxy.ts http://127.0.0.1:PORT
 * prints `bare proxy listening on <port>` once it accepts connections.
 * BARE_BUSY_US=N: a control, not a floor: the proxy also burns N µs of CPU per request (half
 * before forwarding, half once the answer's head arrived), as a gateway's work would, with
 * nothing else of a gateway (bench:paced LAT_BARE_BUSY_US: does the latency's tail on this
 * machine follow the CPU a request takes, whatever takes it?).
 */
import { Agent, createServer, IncomingMessage, request, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Keeps the thread busy for `us` microseconds. */
function burn(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

export function startBareProxy(target: string, port = 0, busyUs = 0): Promise<Server> {
  const t = new URL(target);
  // no socket cap: a bare proxy never queues (the floor for bench:streams, 1,000 concurrent streams)
  const agent = new Agent({ keepAlive: true });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (busyUs) burn(busyUs / 2);
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        if (busyUs) burn(busyUs / 2);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

if (require.main === module) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write('usage: bare-proxy.ts <target base URL>\n');
    process.exit(2);
  }
  startBareProxy(target, 0, Number(process.env.BARE_BUSY_US ?? 0)).then(
    (s) => process.stdout.write(`bare proxy listening on ${(s.address() as AddressInfo).port}\n`),
    (e: unknown) => {
      process.stderr.write(`bare proxy failed: ${String(e)}\n`);
      process.exit(1);
    },
  );
  process.on('SIGTERM', () => process.exit(0));
}
