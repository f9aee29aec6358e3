/**
 * node bench/trace/analyse.js <trace.json> [threshold ms]: reads request-trace.js's output.
 * The slowest requests (at or above the p99, or the threshold): how many overlapped a GC pause,
 * a window of the ledger's work, or neither; the base rate of the same overlaps among all
 * requests; and over each set, the main thread's CPU, its run-queue wait and the rest (off-CPU,
 * waiting for Redis, the upstream or the client).
 */
'use strict';
const t = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const reqs = [];
for (let i = 0; i < t.spans.length; i += 2)
  reqs.push({ a: t.spans[i], b: t.spans[i + 1], cpu: t.sched[i] / 1e6, queued: t.sched[i + 1] / 1e6 });
const sorted = reqs.map((r) => r.b - r.a).sort((x, y) => x - y);
const q = (p) => sorted[Math.floor(p * (sorted.length - 1))];
const span = (reqs[reqs.length - 1].b - reqs[0].a) / 1000;
console.log(
  `requests ${reqs.length} in ${span.toFixed(1)} s; server-side p50 ${q(0.5).toFixed(2)} p90 ${q(0.9).toFixed(2)} ` +
    `p99 ${q(0.99).toFixed(2)} max ${q(1).toFixed(2)} ms`,
);
const from = reqs[0].a;
const gcs = t.gcs.filter(([s]) => s >= from);
const windows = t.windows.filter(([, s]) => s >= from);
const byKind = {};
for (const [, d, k] of gcs) (byKind[k] = byKind[k] || []).push(d);
for (const k of Object.keys(byKind)) {
  const a = byKind[k].sort((x, y) => x - y);
  const name = {
    1: 'scavenge',
    2: 'minor mark-sweep',
    4: 'mark-compact',
    8: 'incremental marking',
    16: 'weak callbacks',
  }[k];
  console.log(
    `GC ${name || k}: ${a.length}, median ${a[a.length >> 1].toFixed(2)} max ${a[a.length - 1].toFixed(2)} ms`,
  );
}
const byTag = {};
for (const w of windows) (byTag[w[0]] = byTag[w[0]] || []).push(w);
for (const tag of Object.keys(byTag)) {
  const w = byTag[tag];
  const med = (f) =>
    w
      .map(f)
      .sort((x, y) => x - y)
      [w.length >> 1].toFixed(2);
  console.log(
    `${tag}: ${w.length}, median ${med((x) => x[2] - x[1])} ms (synchronous part ${med((x) => x[3])} ms)`,
  );
}
const overlaps = (r, s, e) => s < r.b && e > r.a;
const inGc = (r) => gcs.some(([s, d]) => overlaps(r, s, s + d));
const inWindows = (r) => new Set(windows.filter(([, s, e]) => overlaps(r, s, e)).map((w) => w[0]));
function tally(set) {
  let gc = 0;
  let neither = 0;
  const tags = {};
  for (const r of set) {
    const g = inGc(r);
    const w = inWindows(r);
    if (g) gc++;
    for (const tag of w) tags[tag] = (tags[tag] || 0) + 1;
    if (!g && !w.size) neither++;
  }
  const pct = (x) => `${x} (${((100 * x) / set.length).toFixed(1)}%)`;
  const tagText = Object.keys(tags)
    .map((k) => `${k} ${pct(tags[k])}`)
    .join(', ');
  return `a GC pause ${pct(gc)}; ${tagText || 'no window'}; neither ${pct(neither)}`;
}
const threshold = Number(process.argv[3]) || q(0.99);
const slow = reqs.filter((r) => r.b - r.a >= threshold);
console.log(`slowest (>= ${threshold.toFixed(2)} ms): ${slow.length}; overlapping ${tally(slow)}`);
console.log(`all requests: overlapping ${tally(reqs)}`);
const mean = (set, f) => (set.reduce((s, r) => s + f(r), 0) / set.length).toFixed(2);
for (const [name, set] of [
  ['all', reqs],
  ['slowest', slow],
])
  console.log(
    `${name}: wall ${mean(set, (r) => r.b - r.a)} ms on average; main thread on CPU ${mean(set, (r) => r.cpu)}, ` +
      `waiting in the run queue ${mean(set, (r) => r.queued)}, off CPU otherwise ${mean(set, (r) => r.b - r.a - r.cpu - r.queued)} ms`,
  );
