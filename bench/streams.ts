/**
 * npm run bench:streams — many concurrent slow streams through the gateway against a bare
 * node:http proxy, same run (issue 18: "concurrent streams queue silently"). The fake
 * upstream (in this process) streams 50 chunks 100 ms apart (5 s per answer); N clients
 * start their streams at once through one target, then the other. Per target and N: the
 * time each stream took (p50, p99), and the target's CPU per relayed chunk. The gateway runs
 * as in bench:proxy (production mode, PostgreSQL, Redis, a key with limits, the ledger on).
 * The table goes to docs/BENCHMARKS.md (this script rewrites only its own section).
 */
import 'reflect-metadata';
import { Agent, createServer, request, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { dbUrl, startPostgres, startRedis, withClient } from '../test/harness/servers';
import {
  BEFORE,
  children,
  cpuMs,
  createKey,
  memKb,
  GatewayBuild,
  MODEL,
  prepareGateway,
  runBench,
  startBare,
  startFlags,
  startGateway,
  stopProcess,
  Target,
  threadCpu,
  useGateway,
  writeModels,
  writeSection,
} from './proxy';

const COUNTS = (process.env.BENCH_STREAMS ?? '200,1000').split(',').map(Number);
/**
 * Streams each target serves before the measured runs (BENCH_WARMUP, default 1,000: the
 * largest load). A fresh process's first requests run its code unoptimised and open its
 * upstream connections, the bare proxy's too (one run: gateway 154 -> 100 µs per chunk from
 * the first 1,000-stream round to the second, bare proxy 81 -> 61): the figures are a warm
 * process's, the steady state of a gateway that stays up. BENCH_WARMUP=20 shows a cold one.
 */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 1000);
const CHUNKS = 50;
const EVERY_MS = 100;
const HEAD = '## Concurrent slow streams (npm run bench:streams)';

/** OpenAI-style SSE: CHUNKS content chunks EVERY_MS apart, then the usage chunk and [DONE]. */
function startStreamingUpstream(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const chunk = (delta: object, extra: object = {}) =>
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'bench-upstream', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        if (i < CHUNKS) {
          res.write(chunk({ content: ` w${i}` }));
          i++;
          return;
        }
        clearInterval(timer);
        res.write(
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'bench-upstream', choices: [], usage: { prompt_tokens: 9, completion_tokens: CHUNKS, total_tokens: 9 + CHUNKS } })}\n\n`,
        );
        res.end('data: [DONE]\n\n');
      }, EVERY_MS);
      res.on('close', () => clearInterval(timer));
    });
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

/** The CPU each kind of thread spent between two threadCpu readings, per chunk. */
function threadsPerChunk(
  a: Map<string, [number, number]>,
  b: Map<string, [number, number]>,
  chunks: number,
): string {
  const by = new Map<string, [number, number]>();
  for (const [k, [user, sys]] of b) {
    const name = k.slice(0, k.lastIndexOf('#'));
    const [u0, s0] = a.get(k) ?? [0, 0];
    const [u, s] = by.get(name) ?? [0, 0];
    by.set(name, [u + user - u0, s + sys - s0]);
  }
  const us = (ms: number) => ((ms * 1000) / chunks).toFixed(0);
  return [...by]
    .filter(([, [u, s]]) => u + s > 0)
    .sort((x, y) => y[1][0] + y[1][1] - x[1][0] - x[1][1])
    .map(([name, [u, s]]) => `${name} ${us(u + s)} µs (user ${us(u)}, system ${us(s)})`)
    .join(', ');
}

interface StreamRun {
  target: string;
  n: number;
  p50: number;
  p99: number;
  failed: number;
  chunks: number;
  cpuPerChunkUs: number;
  rssPeakMb: number;
  /** CPU per chunk by kind of thread (main thread, V8 and libuv helpers). */
  threads: string;
  /** From-to in CLOCK_MONOTONIC µs. */
  window: string;
}

/** N streams at once through `t`; each one's time from request to its last byte. */
async function streams(t: Target, n: number, key: string): Promise<StreamRun> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const body = JSON.stringify({
    model: MODEL,
    stream: true,
    max_tokens: CHUNKS * 2,
    messages: [{ role: 'user', content: 'stream please' }],
  });
  const cpu0 = cpuMs(t.proc.pid!);
  const threads0 = threadCpu(t.proc.pid!);
  const fromUs = process.hrtime.bigint() / 1000n;
  let chunks = 0;
  let failed = 0;
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, memKb(t.proc.pid!, 'VmRSS'))), 200);
  const times = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve) => {
          const t0 = performance.now();
          const req = request(
            `${t.url}/v1/chat/completions`,
            {
              method: 'POST',
              agent,
              headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (text += c));
              res.on('end', () => {
                const got = (text.match(/"content":" w\d+"/g) ?? []).length;
                chunks += got;
                if (res.statusCode !== 200 || got !== CHUNKS) failed++;
                resolve(performance.now() - t0);
              });
            },
          );
          req.on('error', () => {
            failed++;
            resolve(performance.now() - t0);
          });
          req.end(body);
        }),
    ),
  );
  clearInterval(sampler);
  agent.destroy();
  const cpu = cpuMs(t.proc.pid!) - cpu0;
  const threads = threadsPerChunk(threads0, threadCpu(t.proc.pid!), chunks);
  // the run's window in a --cpu-prof profile (V8 stamps samples with CLOCK_MONOTONIC in µs): bench/cpuprofile.ts
  const window = `${fromUs}-${process.hrtime.bigint() / 1000n}`;
  const sorted = times.sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  return {
    target: t.name,
    n,
    p50: pct(50),
    p99: pct(99),
    failed,
    chunks,
    cpuPerChunkUs: chunks ? (cpu * 1000) / chunks : NaN,
    rssPeakMb: rssPeak / 1024,
    threads,
    window,
  };
}

/** BENCH_PROFILE_DIR=<dir>: node --cpu-prof on the gateway(s) and the bare proxy, written on exit to <dir>/<target>. */
function profileArgs(target: string): string[] {
  const dir = process.env.BENCH_PROFILE_DIR;
  return dir ? ['--cpu-prof', '--cpu-prof-dir', join(dir, target.replace(/\W+/g, '-'))] : [];
}

async function main(): Promise<void> {
  const build = prepareGateway();
  useGateway(build);
  // BENCH_BASELINE=<rev>: that revision too, exported and built the same way, in the same run.
  const baseline = process.env.BENCH_BASELINE ? prepareGateway(process.env.BENCH_BASELINE) : undefined;
  const { pg, adminUrl } = await startPostgres();
  const redis = await startRedis();
  children.push(redis.proc);
  try {
    const upstream = await startStreamingUpstream();
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const modelsFile = writeModels(upstreamUrl);
    const gateways: { t: Target; key: string; build: GatewayBuild }[] = [];
    for (const [i, [b, name]] of ([[build, 'gateway']] as [GatewayBuild, string][])
      .concat(baseline ? [[baseline, BEFORE]] : [])
      .entries()) {
      await withClient(adminUrl, (c) => c.query(`CREATE DATABASE gw_bench_${i}`));
      const t = await startGateway(
        {
          DATABASE_URL: dbUrl(adminUrl, `gw_bench_${i}`),
          REDIS_URL: redis.url,
          MODELS_FILE: modelsFile,
          BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
        },
        profileArgs(name),
        b,
        name,
      );
      gateways.push({ t, key: await createKey(t.url), build: b });
    }
    const bare = await startBare(upstreamUrl, profileArgs('bare'));
    const gatewayTargets = [...gateways.slice(1), gateways[0]];
    const targets = [{ t: bare, key: gateways[0].key }, ...gatewayTargets];
    for (const { t, key } of targets) await streams(t, WARMUP, key);
    const runs: StreamRun[] = [];
    for (const n of COUNTS)
      for (const { t, key } of targets) {
        await new Promise((r) => setTimeout(r, 1500));
        const r = await streams(t, n, key);
        runs.push(r);
        process.stdout.write(
          `${r.target.padEnd(15)} ${String(n).padStart(5)} streams  p50 ${(r.p50 / 1000).toFixed(2)} s  p99 ${(r.p99 / 1000).toFixed(2)} s  ${r.cpuPerChunkUs.toFixed(0)} µs/chunk  failed ${r.failed}  rss ${r.rssPeakMb.toFixed(0)} MB\n${''.padEnd(22)}threads: ${r.threads}; window ${r.window} µs\n`,
        );
      }
    for (const { t } of targets) await stopProcess(t.proc);
    await new Promise((r) => upstream.close(r));
    upstream.closeAllConnections();

    const rows = COUNTS.flatMap((n) => {
      const b = runs.find((r) => r.n === n && r.target === bare.name)!;
      return gatewayTargets.map(({ t, build: gb }) => {
        const g = runs.find((r) => r.n === n && r.target === t.name)!;
        const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
        const label = baseline ? `${t.name === BEFORE ? 'before' : 'after'} (${gb.rev})` : gb.rev;
        return `| ${n} | ${label} | ${s(b.p50)} / ${s(b.p99)} | ${s(g.p50)} / ${s(g.p99)} | ${(g.p99 / b.p99).toFixed(2)} | ${b.cpuPerChunkUs.toFixed(0)} µs | ${g.cpuPerChunkUs.toFixed(0)} µs | ${(g.cpuPerChunkUs / b.cpuPerChunkUs).toFixed(2)} | ${g.rssPeakMb.toFixed(0)} MB | ${b.failed} / ${g.failed} |`;
      });
    });
    const builds = gateways
      .map(
        (g) =>
          `${g.t.name === BEFORE ? 'before' : 'after'}: \`${g.build.rev}\` (${g.build.note}, node flags of its \`npm start\`: ${startFlags(g.build).join(' ') || 'none'})`,
      )
      .join('; ');
    const section = `${HEAD}

N clients start a stream at once (\`stream: true\`, key auth, quota, rpm and the ledger on for
the gateway); the fake upstream answers each with ${CHUNKS} chunks ${EVERY_MS} ms apart (about
${(CHUNKS * EVERY_MS) / 1000} s). Time per stream from the request to its last byte, and the
target's CPU per relayed chunk. Gateway ${builds}; default settings (\`max_connections\` 1024
per deployment); the bare node:http proxy has no socket cap. All on this machine's
${cpus().length} cores, load generator included, shared with other engineers' work: read the
ratios. Each target first served ${WARMUP} streams (\`BENCH_WARMUP\`), the runs are in the table's order,
one target after the other. \`BENCH_BASELINE=<rev> npm run bench:streams\` measures a second build in the same run.
${new Date().toISOString().slice(0, 10)}.

| streams | gateway | bare proxy p50 / p99 | gateway p50 / p99 | p99 ratio | bare CPU / chunk | gateway CPU / chunk | CPU ratio | gateway RSS peak | failed (bare / gateway) |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
    writeSection(section, HEAD);
    process.stdout.write(`\n${section}\nwritten to docs/BENCHMARKS.md\n`);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await pg.stop();
  }
}

runBench('bench:streams', main);
