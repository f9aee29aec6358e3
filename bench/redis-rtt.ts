/**
 * npm run bench:redis-rtt — what one Redis round trip costs this machine at a low rate, seen
 * from ioredis: a script of 20 GETs sent every 2 ms (one at a time, nothing else on the
 * connection), written at once (`sendCommand`) against auto-pipelined (held until
 * setImmediate to share a write), alternating; and PING. For the latency breakdown in
 * docs/BENCHMARKS.md ("Where the added latency goes"). Prints p50/p90 in ms.
 */
import Redis, { Command } from 'ioredis';
import { hasRedisServer, startRedis } from '../test/harness/servers';

const N = Number(process.env.BENCH_RTT_N ?? 1500);
const LUA = "local s = 0 for i = 1, 20 do s = s + tonumber(redis.call('GET', KEYS[1]) or '0') end return s";

async function main(): Promise<void> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const server = await startRedis();
  const piped = new Redis(server.url, { enableAutoPipelining: true });
  const direct = new Redis(server.url);
  try {
    const sha = (await direct.script('LOAD', LUA)) as string;
    const args = Array.from({ length: 30 }, (_, i) => String(i * 12345));
    const runs: Record<string, () => Promise<unknown>> = {
      'script, written at once': () => {
        const c = new Command('evalsha', [sha, 1, 'k', ...args], { replyEncoding: 'utf8' });
        void direct.sendCommand(c);
        return c.promise;
      },
      'script, auto-pipelined': () => piped.evalsha(sha, 1, 'k', ...args),
      PING: () => direct.ping(),
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(runs).map((k) => [k, []]));
    for (let i = 0; i < N; i++) {
      for (const [name, run] of Object.entries(runs)) {
        await new Promise((r) => setTimeout(r, 2));
        const t = performance.now();
        await run();
        times[name].push(performance.now() - t);
      }
    }
    const stats = (await direct.info('commandstats'))
      .split('\n')
      .find((l) => l.startsWith('cmdstat_evalsha'));
    for (const [name, t] of Object.entries(times)) {
      t.sort((a, b) => a - b);
      const at = (q: number) => t[Math.min(t.length - 1, Math.floor(q * t.length))].toFixed(3);
      process.stdout.write(`${name.padEnd(26)} p50 ${at(0.5)} ms  p90 ${at(0.9)} ms  (${t.length})\n`);
    }
    process.stdout.write(`in Redis: ${stats?.trim()}\n`);
  } finally {
    piped.disconnect();
    direct.disconnect();
    server.proc.kill();
  }
}

main().catch((e) => {
  process.stderr.write(`bench:redis-rtt failed: ${(e as Error).message}\n`);
  process.exit(1);
});
