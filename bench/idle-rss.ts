/**
 * npm run bench:idle (BENCH_FROM_TREE=1 for the working tree) — the gateway's RSS after start.
 *
 * The gateway as bench:proxy starts it (its `npm start` node flags, production mode), in
 * bench:proxy's setup (PostgreSQL + Redis from the test harness) or on embedded defaults
 * (BENCH_IDLE_EMBEDDED=1: no DATABASE_URL, no REDIS_URL). Reports VmRSS 1 s after the
 * "listening" line, after bench:proxy's key setup (tenant, user, login, key), the first and
 * second completion's latency, and RSS after them. BENCH_IDLE_WAIT=<s>: RSS every 5 s of idle
 * time after the start; BENCH_IDLE_SAT=<s>: a saturated load after, with CPU per request and
 * peak RSS; BENCH_IDLE_FLAGS: node flags after the start script's; BENCH_IDLE_PROBE=idle|after:
 * SIGUSR2 to the gateway there (for a -r preload given in BENCH_GATEWAY_NODE_OPTIONS).
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { dbUrl, hasRedisServer, startPostgres, startRedis, withClient } from '../test/harness/servers';
import {
  children,
  createKey,
  load,
  memKb,
  MODEL,
  prepareGateway,
  REQUEST_BODY,
  runBench,
  startGateway,
  startUpstream,
  stopProcess,
  useGateway,
  writeModels,
} from './proxy';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const EMBEDDED = process.env.BENCH_IDLE_EMBEDDED === '1';
const ROUNDS = Number(process.env.BENCH_IDLE_ROUNDS ?? 1);

async function main(): Promise<void> {
  const build = prepareGateway(process.env.BENCH_IDLE_REV ?? 'HEAD');
  useGateway(build);
  const services = EMBEDDED ? undefined : await startPostgres();
  const redis = !EMBEDDED && hasRedisServer() ? await startRedis() : undefined;
  if (redis) children.push(redis.proc);
  try {
    const upstream = await startUpstream();
    const modelsFile = writeModels(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    for (let round = 0; round < ROUNDS; round++) {
      const env: Record<string, string> = {
        MODELS_FILE: modelsFile,
        BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
      };
      if (services) {
        await withClient(services.adminUrl, (c) => c.query(`CREATE DATABASE gw_idle_${round}`));
        env.DATABASE_URL = dbUrl(services.adminUrl, `gw_idle_${round}`);
      }
      if (redis) env.REDIS_URL = redis.url;
      const started = Date.now();
      // BENCH_IDLE_FLAGS: node flags after the start script's (the later one wins), to compare.
      const extra = (process.env.BENCH_IDLE_FLAGS ?? '').split(' ').filter(Boolean);
      const gw = await startGateway(env, extra);
      const startMs = Date.now() - started;
      const pid = gw.proc.pid!;
      await sleep(1000);
      const idle = memKb(pid, 'VmRSS');
      // BENCH_IDLE_WAIT=<s>: RSS every 5 s of that idle time too (what V8 gives back unprompted).
      const later: string[] = [];
      for (let s = 5; s <= Number(process.env.BENCH_IDLE_WAIT ?? 0); s += 5) {
        await sleep(5000);
        later.push(`${s + 1} s ${mb(memKb(pid, 'VmRSS'))}`);
      }
      if (process.env.BENCH_IDLE_PROBE === 'idle') {
        process.kill(pid, 'SIGUSR2');
        await sleep(3000);
      }
      const key = await createKey(gw.url);
      await sleep(1000);
      const afterKey = memKb(pid, 'VmRSS');
      const lat: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: REQUEST_BODY,
        });
        const body = await res.text();
        lat.push(performance.now() - t);
        if (res.status !== 200) throw new Error(`${MODEL}: ${res.status} ${body}`);
      }
      await sleep(500);
      const after = memKb(pid, 'VmRSS');
      if (process.env.BENCH_IDLE_PROBE === 'after') {
        process.kill(pid, 'SIGUSR2');
        await sleep(3000);
      }
      // BENCH_IDLE_SAT=<s>: then a saturated load (32 connections) for that long, after a 3 s warm-up.
      let sat = '';
      if (process.env.BENCH_IDLE_SAT) {
        gw.key = key;
        await load(gw, { seconds: 3, connections: 32 });
        const r = await load(gw, { seconds: Number(process.env.BENCH_IDLE_SAT), connections: 32 });
        sat = `; saturated ${r.reqPerSec.toFixed(0)} req/s, ${r.cpuPerReqUs.toFixed(0)} µs/req, others ${r.othersCpu.toFixed(2)} cores, RSS ${mb(memKb(pid, 'VmRSS'))}, peak ${mb(memKb(pid, 'VmHWM'))}`;
      }
      process.stdout.write(
        `${extra.join(' ')} ${process.env.BENCH_GATEWAY_ENV ?? ''} ${build.rev} ${EMBEDDED ? 'embedded' : 'pg+redis'}: start ${startMs} ms, idle ${mb(idle)}${later.length ? ` (${later.join(', ')})` : ''}, after key setup ${mb(afterKey)}, ` +
          `completions ${lat.map((v) => v.toFixed(1)).join(' / ')} ms, after ${mb(after)}, peak ${mb(memKb(pid, 'VmHWM'))}${sat}\n`,
      );
      await stopProcess(gw.proc);
    }
  } finally {
    await services?.pg.stop();
  }
}

runBench('bench:idle', main);
