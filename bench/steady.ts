/**
 * npm run bench:steady — does the gateway's memory stay flat under steady traffic (issue 18)?
 *
 * Same placement as bench:proxy (bench/proxy.ts: the fake upstream and autocannon in this
 * process, the gateway in its own process, production mode, real PostgreSQL and Redis, one
 * virtual key with limits on, the ledger on): BENCH_STEADY_RATE requests a second (300) of
 * non-streamed `POST /v1/chat/completions` for BENCH_STEADY_MINUTES (10), the gateway's RSS
 * sampled every 10 s. Judged: RSS at the last minute within 10% of minute 2 (after warm-up).
 * The table goes to docs/BENCHMARKS.md (this script rewrites only its own section).
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { dbUrl, hasRedisServer, startPostgres, startRedis, withClient } from '../test/harness/servers';
import {
  children,
  createKey,
  load,
  memKb,
  prepareGateway,
  runBench,
  startGateway,
  startUpstream,
  stopProcess,
  useGateway,
  writeModels,
  writeSection,
} from './proxy';

const RATE = Number(process.env.BENCH_STEADY_RATE ?? 300);
const MINUTES = Number(process.env.BENCH_STEADY_MINUTES ?? 10);
const HEAD = '## Steady traffic, memory over time (npm run bench:steady)';
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

async function main(): Promise<void> {
  if (MINUTES < 3) throw new Error('BENCH_STEADY_MINUTES must be at least 3 (minute 2 is the baseline)');
  const build = prepareGateway();
  useGateway(build);
  const { pg, adminUrl } = await startPostgres();
  try {
    const redis = hasRedisServer() ? await startRedis() : undefined;
    if (redis) children.push(redis.proc);
    const upstream = await startUpstream();
    const modelsFile = writeModels(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    await withClient(adminUrl, (c) => c.query('CREATE DATABASE gw_bench_steady'));
    const gw = await startGateway({
      DATABASE_URL: dbUrl(adminUrl, 'gw_bench_steady'),
      MODELS_FILE: modelsFile,
      BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
      ...(redis ? { REDIS_URL: redis.url } : {}),
    });
    const pid = gw.proc.pid!;
    const idleKb = memKb(pid, 'VmRSS');
    const key = await createKey(gw.url);

    // RSS every 10 s while one paced load runs for the whole time.
    const samples: { s: number; kb: number }[] = [];
    const t0 = Date.now();
    const timer = setInterval(() => {
      samples.push({ s: Math.round((Date.now() - t0) / 1000), kb: memKb(pid, 'VmRSS') });
      const last = samples[samples.length - 1];
      if (last.s % 60 === 0) process.stdout.write(`${last.s / 60} min: RSS ${mb(last.kb)}\n`);
    }, 10_000);
    const run = await load(gw, { rate: RATE, seconds: MINUTES * 60, connections: 32 }, key);
    clearInterval(timer);
    const peakKb = memKb(pid, 'VmHWM');
    await stopProcess(gw.proc);
    await new Promise((r) => upstream.close(r));
    upstream.closeAllConnections();

    const at = (min: number) => samples.filter((x) => x.s > (min - 1) * 60 && x.s <= min * 60);
    const avg = (xs: { kb: number }[]) => xs.reduce((a, x) => a + x.kb, 0) / Math.max(1, xs.length);
    const minutes = Array.from({ length: MINUTES }, (_, i) => i + 1);
    const base = avg(at(2));
    const last = avg(at(MINUTES));
    const growth = last / base - 1;
    const held = Math.abs(growth) <= 0.1;
    const rows = minutes.map(
      (m) => `| ${m} | ${mb(avg(at(m)))} | ${((avg(at(m)) / base - 1) * 100).toFixed(1)}% |`,
    );
    const section = `${HEAD}

The gateway (\`${build.rev}\`, ${build.note}) with ${redis ? 'Redis' : 'the in-process quota store'} and
PostgreSQL, driven at ${RATE} req/s (paced, 32 connections) for ${MINUTES} minutes with non-streamed
\`POST /v1/chat/completions\` (key auth, quota, budget, rpm, ledger and access log on); RSS read from
\`/proc/<pid>/status\` every 10 s, averaged per minute. ${cpus().length} cores shared with the load
generator, PostgreSQL and Redis. ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.

| minute | RSS (average) | vs minute 2 |
|---|---|---|
${rows.join('\n')}

- Served ${run.reqPerSec.toFixed(0)} req/s, p50 ${run.p50.toFixed(2)} ms, p99 ${run.p99.toFixed(2)} ms, ${run.non2xx} non-2xx, ${run.errors} errors; ${run.cpuPerReqUs.toFixed(0)} µs of gateway CPU per request.
- RSS idle after start ${mb(idleKb)}, peak ${mb(peakKb)}.
- Minute ${MINUTES} against minute 2: **${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(1)}%** (target: within 10%): **${held ? 'held' : 'missed'}**.
`;
    writeSection(section, HEAD);
    process.stdout.write(`\n${section}`);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await pg.stop();
  }
}

if (require.main === module) runBench('bench:steady', main, (MINUTES * 60 + 240) * 1000);
