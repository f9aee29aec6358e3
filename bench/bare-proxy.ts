/**
 * The floor for bench:proxy: a bare node:http pass-through proxy, what any proxy must pay.
 * Forwards method, path, headers and body to the target, pipes the answer back; one
 * keep-alive agent. Run as its own process (like the gateway):
 *   node -r ts-node/register bench/bare-proxy.ts http://127.0.0.1:PORT
 * prints `bare proxy listening on <port>` once it accepts connections.
 * BARE_BUSY_US=N: a control, not a floor: the proxy also burns N µs of CPU per request (half
 * before forwarding, half once the answer's head arrived), as a gateway's work would, with
 * nothing else of a gateway (bench:paced LAT_BARE_BUSY_US: does the latency's tail on this
 * machine follow the CPU a request takes, whatever takes it?). BARE_REDIS_URL: it also runs one
 * tiny Lua script on that Redis (ioredis, as the gateway) before forwarding and one after the
 * answer's head, each awaited: two round trips per request, as the gateway's reserve and settle.
 */
import { Agent, createServer, IncomingMessage, request, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';

/** Keeps the thread busy for `us` microseconds. */
function burn(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

export function startBareProxy(target: string, port = 0, busyUs = 0, redisUrl?: string): Promise<Server> {
  const t = new URL(target);
  const redis = redisUrl ? new Redis(redisUrl) : undefined;
  /** One script round trip, then `next`. */
  const trip = (next: () => void) => {
    if (!redis) return next();
    redis.eval('return redis.call("INCR", KEYS[1])', 1, 'bare-proxy:trips').then(next, next);
  };
  // no socket cap: a bare proxy never queues (the floor for bench:streams, 1,000 concurrent streams)
  const agent = new Agent({ keepAlive: true });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (busyUs) burn(busyUs / 2);
    trip(() => {
      const up = request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent },
        (answer) => {
          if (busyUs) burn(busyUs / 2);
          trip(() => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          });
        },
      );
      up.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(up);
    });
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
  startBareProxy(target, 0, Number(process.env.BARE_BUSY_US ?? 0), process.env.BARE_REDIS_URL).then(
    (s) => process.stdout.write(`bare proxy listening on ${(s.address() as AddressInfo).port}\n`),
    (e: unknown) => {
      process.stderr.write(`bare proxy failed: ${String(e)}\n`);
      process.exit(1);
    },
  );
  process.on('SIGTERM', () => process.exit(0));
}
