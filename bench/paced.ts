/**
 * npm run bench:paced (BENCH_FROM_TREE=1 for the working tree; LAT_REV=<rev> another build) — a
 * quick look at one paced load, for iterating on latency: the gateway (bench:proxy's setup and
 * start flags) and the bare proxy alternate LAT_ROUNDS times at LAT_RATE req/s (default 200)
 * for LAT_SECONDS each; prints p50/p99, CPU per request, and each thread's user/system CPU
 * (the main thread against V8's helper threads). Also the gateway's idle CPU before the load.
 * LAT_RATE=0: saturated instead (32 connections; LAT_CONNECTIONS=1: sequential). LAT_PROFILE=1: a --cpu-prof of the gateway,
 * summarised for its last load. LAT_SLOWLOG=1: Redis SLOWLOG of every command during the
 * gateway's load, to <tmpdir>/paced-slowlog.json. Redis INFO commandstats after the runs.
 * LAT_FLAGS: node flags after the start script's (e.g. --trace-gc; the log stays in
 * /tmp/gw-bench-proxy-*). LAT_HOLD=<s>: keep the gateway up that long after the runs.
 * LAT_PHASES=1: with bench/phase-timing.patch applied (see there).
 * LAT_GC=1: each gateway runs with --trace-gc-nvp; per load, what V8's collector did (bytes
 * allocated and promoted per request, scavenges and their pauses, mark-compacts, their pauses
 * and their concurrent marking's CPU on V8's helper threads).
 * LAT_FLAGS_B: a second gateway of the same build with these node flags instead of LAT_FLAGS
 * (its own database), alternated with the first in every round (the order flipped each round):
 * node flags compared in one run. LAT_ENV_B="K=V,...": that second gateway with these
 * environment variables added (settings compared in one run; with or without LAT_FLAGS_B).
 * LAT_BASELINE=<rev>: a gateway built from that revision (its own database), alternated with
 * the others in every round (the gateways' order flipped each round); the median CPU per
 * request of each target over the rounds is printed at the end.
 * LAT_BARE_BUSY_US=N: a control alternated with the others, the bare proxy burning N µs of CPU
 * per request (bench/bare-proxy.ts BARE_BUSY_US); LAT_BARE_REDIS=1: that control (or, without
 * LAT_BARE_BUSY_US, a bare proxy) also runs two tiny scripts on the bench's Redis per request.
 * Not a figure for docs/: bench:proxy is.
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { dbUrl, hasRedisServer, startPostgres, startRedis, withClient } from '../test/harness/servers';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execSync } from 'node:child_process';
import { join } from 'node:path';
import { summariseProfile } from './cpuprofile';
import { analyseSched, startSched, stopSched } from './sched';
import {
  CATEGORIES,
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
  threadCpu,
  useGateway,
  writeModels,
} from './proxy';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What V8's collector did in a --trace-gc-nvp log from byte `from` on, for `requests` answers. */
function gcSummary(log: string, from: number, requests: number): string {
  let allocated = 0;
  let promoted = 0;
  const scavenges: number[] = [];
  const mcs: number[] = [];
  let marking = 0;
  for (const line of readFileSync(log).subarray(from).toString().split('\n')) {
    const field = (k: string) => Number(new RegExp(`\\b${k}=([0-9.]+)`).exec(line)?.[1] ?? 0);
    const kind = / gc=(s|mc|mmc)\b/.exec(line)?.[1];
    if (!kind) continue;
    allocated += field('allocated');
    promoted += field('promoted');
    (kind === 's' ? scavenges : mcs).push(field('pause'));
    marking += field('background.mark');
  }
  const kb = (b: number) => (b / requests / 1024).toFixed(1);
  const pauses = (a: number[]) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length ? `median ${s[s.length >> 1].toFixed(1)} max ${s[s.length - 1].toFixed(1)} ms` : '-';
  };
  return (
    `allocated ${kb(allocated)} KB/req, promoted ${kb(promoted)} KB/req; ` +
    `${scavenges.length} scavenges (${pauses(scavenges)}); ${mcs.length} mark-compacts ` +
    `(${pauses(mcs)}; concurrent marking ${marking.toFixed(0)} ms CPU)`
  );
}
/** Each thread's user and system CPU between two threadCpu readings (the main thread is `node#<pid>`). */
function diff(a: Map<string, [number, number]>, b: Map<string, [number, number]>): string {
  return [...b]
    .map(([k, [u, s]]): [string, number, number] => [k, u - (a.get(k)?.[0] ?? 0), s - (a.get(k)?.[1] ?? 0)])
    .filter(([, u, s]) => u + s > 0)
    .map(([k, u, s]) => `${k}: user ${u} sys ${s} ms`)
    .join('; ');
}
async function main(): Promise<void> {
  const build = prepareGateway(process.env.LAT_REV ?? 'HEAD');
  useGateway(build);
  const baseBuild = process.env.LAT_BASELINE ? prepareGateway(process.env.LAT_BASELINE) : undefined;
  const services = await startPostgres();
  const redis = hasRedisServer() ? await startRedis() : undefined;
  if (redis) children.push(redis.proc);
  try {
    const upstream = await startUpstream();
    const up = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const modelsFile = writeModels(up);
    await withClient(services.adminUrl, (c) => c.query(`CREATE DATABASE gw_lat`));
    const gcFlags = process.env.LAT_GC === '1' ? ['--trace-gc-nvp'] : [];
    const flagsB = process.env.LAT_FLAGS_B?.split(' ').filter(Boolean).concat(gcFlags);
    const env: Record<string, string> = {
      MODELS_FILE: modelsFile,
      BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
      DATABASE_URL: dbUrl(services.adminUrl, 'gw_lat'),
    };
    if (redis) env.REDIS_URL = redis.url;
    const extra = [...gcFlags, ...(process.env.LAT_FLAGS ?? '').split(' ').filter(Boolean)];
    const profDir = mkdtempSync(join(tmpdir(), 'gw-paced-prof-'));
    if (process.env.LAT_PROFILE === '1') extra.push('--cpu-prof', '--cpu-prof-dir', profDir);
    let window: { fromUs: number; toUs: number } | undefined;
    const gw = await startGateway(env, extra);
    const bare = await startBare(up);
    const pid = gw.proc.pid!;
    gw.key = await createKey(gw.url);
    /** Another gateway on its own database, alternated with `gw` in every round. */
    const second = async (
      db: string,
      flags: string[],
      name: string,
      b?: typeof build,
      more: Record<string, string> = {},
    ) => {
      await withClient(services.adminUrl, (c) => c.query(`CREATE DATABASE ${db}`));
      const t = await startGateway(
        { ...env, ...more, DATABASE_URL: dbUrl(services.adminUrl, db) },
        flags,
        b,
        name,
      );
      t.key = await createKey(t.url);
      return t;
    };
    const envB = Object.fromEntries(
      (process.env.LAT_ENV_B ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    const gwB =
      flagsB || process.env.LAT_ENV_B
        ? await second(
            'gw_lat_b',
            flagsB ?? gcFlags,
            `gateway B (${[...(flagsB ?? []), ...Object.keys(envB).map((k) => `${k}=${envB[k]}`)].join(' ')})`,
            undefined,
            envB,
          )
        : undefined;
    const base = baseBuild ? await second('gw_lat_base', gcFlags, 'baseline', baseBuild) : undefined;
    const busyUs = Number(process.env.LAT_BARE_BUSY_US ?? 0);
    const busyRedis = process.env.LAT_BARE_REDIS === '1' ? redis?.url : undefined;
    const busy = busyUs || busyRedis ? await startBare(up, [], busyUs, busyRedis) : undefined;
    const perReq = new Map<string, number[]>();
    await sleep(3000);
    const c0 = cpuMs(pid);
    await sleep(10000);
    console.log(`idle CPU: ${((cpuMs(pid) - c0) / 10000).toFixed(3)} cores`);
    // LAT_RATE=0: saturated (32 connections, no pacing)
    const rate = Number(process.env.LAT_RATE ?? 200) || undefined;
    const connections = Number(process.env.LAT_CONNECTIONS) || (rate ? 64 : 32);
    const gateways = [gw, ...(gwB ? [gwB] : []), ...(base ? [base] : []), ...(busy ? [busy] : [])];
    for (const t of gateways) await load(t, { rate, seconds: 3, connections }, t.key);
    for (let i = 0; i < Number(process.env.LAT_ROUNDS ?? 2); i++) {
      for (const t of [bare, ...(gateways.length > 1 && i % 2 ? [...gateways].reverse() : gateways)]) {
        // bench/phase-timing.patch: SIGUSR2 drops the warm-up's timings (without it the signal would end the gateway)
        if (t !== bare && t !== busy && process.env.LAT_PHASES === '1') process.kill(t.proc.pid!, 'SIGUSR2');
        if (t === gw && redis && process.env.LAT_SLOWLOG)
          execSync(
            `redis-cli -p ${redis.port} config set slowlog-log-slower-than 0 && redis-cli -p ${redis.port} config set slowlog-max-len 100000 && redis-cli -p ${redis.port} slowlog reset`,
          );
        const th0 = threadCpu(t.proc.pid!);
        const logAt = t.log ? statSync(t.log).size : 0;
        const sched =
          process.env.LAT_SCHED === '1' ? await startSched(join(profDir, 'sched.data')) : undefined;
        const r = await load(
          t,
          { rate, seconds: Number(process.env.LAT_SECONDS ?? 8), connections },
          t.key ?? gw.key,
        );
        if (sched) await stopSched(sched);
        perReq.set(t.name, [...(perReq.get(t.name) ?? []), r.cpuPerReqUs]);
        console.log(
          `${t.name} ${rate ?? 'saturated'}/s: p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} cpu/req ${r.cpuPerReqUs.toFixed(0)} µs, cores ${r.targetCpu.toFixed(2)} others ${r.othersCpu.toFixed(2)} servers ${r.serversCpu.toFixed(2)}`,
        );
        if (t === gw) window = { fromUs: r.fromUs, toUs: r.toUs };
        console.log('   ' + diff(th0, threadCpu(t.proc.pid!)));
        if (t.log && gcFlags.length) console.log('   ' + gcSummary(t.log, logAt, r.answered));
        if (sched)
          for (const l of analyseSched(
            sched.file,
            { target: t.proc.pid!, redis: redis?.proc.pid, bench: process.pid },
            r.answered,
          ))
            console.log('   ' + l);
      }
    }
    if (redis)
      console.log(
        execSync(`redis-cli -p ${redis.port} info commandstats`)
          .toString()
          .split('\n')
          .filter((l) => /calls=\d{3,}/.test(l))
          .join('\n'),
      );
    if (redis && process.env.LAT_SLOWLOG)
      execSync(`redis-cli -p ${redis.port} --json slowlog get 100000 > ${tmpdir()}/paced-slowlog.json`);
    if (process.env.LAT_HOLD) await sleep(Number(process.env.LAT_HOLD) * 1000);
    for (const t of gateways) await stopProcess(t.proc);
    for (const [name, us] of perReq) {
      const sorted = [...us].sort((a, b) => a - b);
      console.log(
        `${name}: CPU per request, median of ${us.length} rounds ${sorted[Math.floor((sorted.length - 1) / 2)].toFixed(0)} µs (${us.map((u) => u.toFixed(0)).join(', ')})`,
      );
    }
    const prof = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (prof && window) {
      const sum = summariseProfile(join(profDir, prof), 40, window, CATEGORIES);
      console.log(
        `profile ${join(profDir, prof)}: busy ${sum.busyMs.toFixed(0)} of ${sum.totalMs.toFixed(0)} ms`,
      );
      for (const e of [...sum.categories, ...sum.modules, ...sum.functions])
        console.log(`  ${(e.share * 100).toFixed(1).padStart(5)}%  ${e.name}`);
    }
    await stopProcess(bare.proc);
  } finally {
    await services.pg.stop();
  }
}
runBench('lat', main);
