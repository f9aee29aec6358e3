/**
 * A node preload for the gateway (`-r`): what each request's server-side time overlapped.
 * Not part of the product; a measuring tool for issue 18's sequential p99 (docs/BENCHMARKS.md
 * "The sequential p99: what the slowest 1% overlap").
 *
 *   npm run build
 *   BENCH_FROM_TREE=1 LAT_RATE=0 LAT_CONNECTIONS=1 LAT_ROUNDS=1 LAT_SECONDS=15 \
 *     LAT_FLAGS="-r $PWD/bench/trace/request-trace.js" \
 *     BENCH_GATEWAY_ENV="TRACE_DIST=$PWD/dist,TRACE_OUT=/tmp/trace.json" npm run bench:paced
 *   node bench/trace/analyse.js /tmp/trace.json
 *
 * Records, from the moment the gateway gets SIGUSR2 (bench:paced sends it before the measured
 * load with LAT_PHASES=1; otherwise from start) to its exit:
 * - every request: 'request' to 'finish' (performance.now()), and the main thread's CPU time and
 *   run-queue wait over that span (/proc/thread-self/schedstat, read at both ends);
 * - every GC pause (PerformanceObserver 'gc');
 * - the windows of the ledger's periodic work (TRACE_DIST: the build's dist/): the queue's tick
 *   and drain, the stream's pass, the batch inserts, the refusal flush; and how long the
 *   synchronous part of each call took;
 * - the duration of every fs.writeSync, per file descriptor (to TRACE_OUT.writes).
 */
'use strict';
const http = require('http');
const fs = require('fs');
const { performance, PerformanceObserver } = require('perf_hooks');

const N = 2e6;
const spans = new Float64Array(N * 2);
const sched = new Float64Array(N * 2);
let n = 0;
const gcs = [];
const windows = [];
const writes = new Map();
const out = process.env.TRACE_OUT || '/tmp/request-trace.json';

const statFd = fs.openSync('/proc/thread-self/schedstat', 'r');
const statBuf = Buffer.alloc(128);
/** The main thread's [on-CPU ns, run-queue wait ns] so far. */
function schedstat() {
  const len = fs.readSync(statFd, statBuf, 0, statBuf.length, 0);
  const f = statBuf.toString('latin1', 0, len).split(' ');
  return [Number(f[0]), Number(f[1])];
}

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request') {
    const t0 = performance.now();
    const s0 = schedstat();
    res.once('finish', () => {
      if (n >= N) return;
      const s1 = schedstat();
      spans[2 * n] = t0;
      spans[2 * n + 1] = performance.now();
      sched[2 * n] = s1[0] - s0[0];
      sched[2 * n + 1] = s1[1] - s0[1];
      n++;
    });
  }
  return emit.apply(this, arguments);
};

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push([e.startTime, e.duration, e.detail ? e.detail.kind : 0]);
}).observe({ entryTypes: ['gc'] });

/** Records each call's window [start, settled] and its synchronous part. */
function wrap(file, cls, method, tag) {
  try {
    const C = require(file)[cls];
    const f = C.prototype[method];
    C.prototype[method] = function (...args) {
      const t0 = performance.now();
      const r = f.apply(this, args);
      const sync = performance.now() - t0;
      const done = () => windows.push([tag, t0, performance.now(), sync]);
      if (r && typeof r.then === 'function') r.then(done, done);
      else done();
      return r;
    };
  } catch (e) {
    process.stderr.write(`request-trace: cannot wrap ${cls}.${method}: ${e.message}\n`);
  }
}
const dist = process.env.TRACE_DIST;
if (dist) {
  const q = `${dist}/libs/quota/src`;
  wrap(`${q}/ledger/ledger.service.js`, 'LedgerService', 'tick', 'tick');
  wrap(`${q}/ledger/ledger.service.js`, 'LedgerService', 'drain', 'drain');
  wrap(`${q}/ledger/ledger-stream.service.js`, 'LedgerStreamService', 'runPass', 'pass');
  wrap(`${q}/ledger/ledger.repository.js`, 'LedgerRepository', 'insertBatch', 'insert');
  wrap(`${q}/refusals/refusal-flusher.service.js`, 'RefusalFlusher', 'flush', 'refusals');
}

const writeSync = fs.writeSync;
fs.writeSync = function (fd, ...rest) {
  const t0 = performance.now();
  try {
    return writeSync.call(this, fd, ...rest);
  } finally {
    let a = writes.get(fd);
    if (!a) writes.set(fd, (a = []));
    if (a.length < N) a.push(performance.now() - t0);
  }
};

process.on('SIGUSR2', () => {
  n = 0;
  gcs.length = 0;
  windows.length = 0;
  writes.clear();
});
process.on('exit', () => {
  writeSync(
    fs.openSync(out, 'w'),
    JSON.stringify({
      spans: Array.from(spans.subarray(0, 2 * n)),
      sched: Array.from(sched.subarray(0, 2 * n)),
      gcs,
      windows,
    }),
  );
  const lines = [];
  for (const [fd, a] of writes) {
    a.sort((x, y) => x - y);
    const q = (p) => (a[Math.floor(p * (a.length - 1))] * 1000).toFixed(0);
    const mean = ((a.reduce((s, x) => s + x, 0) / a.length) * 1000).toFixed(0);
    lines.push(
      `fd ${fd}: ${a.length} writes, µs p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)} mean ${mean}`,
    );
  }
  writeSync(fs.openSync(`${out}.writes`, 'w'), lines.join('\n') + '\n');
});
