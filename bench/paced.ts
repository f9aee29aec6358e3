/**
 * npm run bench:paced (BENCH_FROM_TREE=1 for the working tree; LAT_REV=<rev> another build) — a
 * quick look at one paced load, for iterating on latency: the gateway (bench:proxy's setup and
 * start flags) and the bare proxy alternate LAT_ROUNDS times at LAT_RATE req/s (default 200)
 * for LAT_SECONDS each; prints p50/p99, CPU per request, and each thread's user/system CPU
 * (the main thread against V8's helper threads). Also the gateway's idle CPU before the load.
 * LAT_FLAGS: node flags after the start script's (e.g. --trace-gc; the log stays in
 * /tmp/gw-bench-proxy-*). LAT_HOLD=<s>: keep the gateway up that long after the runs.
 * Not a figure for docs/: bench:proxy is.
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { dbUrl, hasRedisServer, startPostgres, startRedis, withClient } from '../test/harness/servers';
import { readdirSync, readFileSync } from 'node:fs';
import {
  children,
  cpuMs,
  createKey,
  load,
  prepareGateway,
  runBench,
  startBare,
  startGateway,
  startUpstream,
  stopProcess,
  useGateway,
  writeModels,
} from './proxy';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function threads(pid: number): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')) + '#' + t;
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(name, [Number(f[11]) * 10, Number(f[12]) * 10]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return m;
}
function diff(a: Map<string, [number, number]>, b: Map<string, [number, number]>): string {
  const agg = new Map<string, [number, number]>();
  for (const [k, v] of b) {
    const o = a.get(k) ?? [0, 0];
    const n = k;
    const x = agg.get(n) ?? [0, 0];
    agg.set(n, [x[0] + v[0] - o[0], x[1] + v[1] - o[1]]);
  }
  return [...agg]
    .filter(([, v]) => v[0] + v[1] > 0)
    .map(([k, v]) => `${k}: user ${v[0]} sys ${v[1]} ms`)
    .join('; ');
}
async function main(): Promise<void> {
  const build = prepareGateway(process.env.LAT_REV ?? 'HEAD');
  useGateway(build);
  const services = await startPostgres();
  const redis = hasRedisServer() ? await startRedis() : undefined;
  if (redis) children.push(redis.proc);
  try {
    const upstream = await startUpstream();
    const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const modelsFile = writeModels(up);
    await withClient(services.adminUrl, (c) => c.query(`CREATE DATABASE gw_lat`));
    const env: Record<string, string> = {
      MODELS_FILE: modelsFile,
      BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
      DATABASE_URL: dbUrl(services.adminUrl, 'gw_lat'),
    };
    if (redis) env.REDIS_URL = redis.url;
    const extra = (process.env.LAT_FLAGS ?? '').split(' ').filter(Boolean);
    const gw = await startGateway(env, extra);
    const bare = await startBare(up);
    const pid = gw.proc.pid!;
    gw.key = await createKey(gw.url);
    await sleep(3000);
    const c0 = cpuMs(pid);
    await sleep(10000);
    console.log(`idle CPU: ${((cpuMs(pid) - c0) / 10000).toFixed(3)} cores`);
    const rate = Number(process.env.LAT_RATE ?? 200);
    await load(gw, { rate, seconds: 3, connections: 64 });
    for (let i = 0; i < Number(process.env.LAT_ROUNDS ?? 2); i++) {
      for (const t of [bare, gw]) {
        const th0 = threads(t.proc.pid!);
        const r = await load(
          t,
          { rate, seconds: Number(process.env.LAT_SECONDS ?? 8), connections: 64 },
          gw.key,
        );
        console.log(
          `${t.name} ${rate}/s: p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} cpu/req ${r.cpuPerReqUs.toFixed(0)} µs, cores ${r.targetCpu.toFixed(2)} others ${r.othersCpu.toFixed(2)} servers ${r.serversCpu.toFixed(2)}`,
        );
        console.log('   ' + diff(th0, threads(t.proc.pid!)));
      }
    }
    if (process.env.LAT_HOLD) await sleep(Number(process.env.LAT_HOLD) * 1000);
    await stopProcess(gw.proc);
    await stopProcess(bare.proc);
  } finally {
    await services.pg.stop();
  }
}
runBench('lat', main);
