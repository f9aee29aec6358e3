/**
 * Scheduler delays during one load (bench:paced LAT_SCHED=1): `perf sched record` of the whole
 * machine while the load runs, then, from `perf sched timehist`, how long the threads a request
 * passes through (the target's main thread, Redis, the bench process: load generator and fake
 * upstream) waited runnable for a CPU, and what ran on the CPUs while they waited more than
 * 0.5 ms. A request that waits for a core it shares with other processes is slow for reasons
 * outside the process under test; this says how often, and who held the cores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface SchedRecording {
  proc: ChildProcess;
  file: string;
}

/** Starts `perf sched record -a` into `file`; resolves once perf is recording. */
export async function startSched(file: string): Promise<SchedRecording> {
  const proc = spawn('perf', ['sched', 'record', '-a', '-o', file], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  return { proc, file };
}

export async function stopSched(r: SchedRecording): Promise<void> {
  const done = new Promise((ok) => r.proc.once('exit', ok));
  r.proc.kill('SIGINT');
  await done;
}

interface Slice {
  cpu: number;
  from: number;
  to: number;
  tid: number;
  pid: number;
  comm: string;
}

/** The thread groups a request passes through, by pid (their main thread is tid == pid). */
export interface SchedRoles {
  target: number;
  redis?: number;
  bench: number;
}

/**
 * One line per role: the main thread's delays (count over 0.5 / 1 / 2 ms, total per request),
 * then who ran on the CPUs during its delays over 0.5 ms (ms, by group).
 */
export function analyseSched(file: string, roles: SchedRoles, requests: number): string[] {
  const out = spawnSync('perf', ['sched', 'timehist', '-i', file], {
    maxBuffer: 1 << 30,
    encoding: 'utf8',
  }).stdout;
  const slices: Slice[] = [];
  const waits: { tid: number; from: number; to: number }[] = [];
  // "   482.770482 [0000]  migration/0[18]   0.000   0.013   0.020"
  const line = /^\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:\/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/;
  for (const l of out.split('\n')) {
    const m = line.exec(l);
    if (!m) continue;
    const end = Number(m[1]) * 1000;
    const run = Number(m[8]);
    const delay = Number(m[7]);
    const tid = Number(m[4]);
    const pid = Number(m[5] ?? m[4]);
    slices.push({ cpu: Number(m[2]), from: end - run, to: end, tid, pid, comm: m[3] });
    if (delay > 0) waits.push({ tid, from: end - run - delay, to: end - run });
  }
  slices.sort((a, b) => a.from - b.from);
  const group = (s: Slice): string => {
    if (s.pid === roles.target) return s.tid === roles.target ? 'target main' : `target ${s.comm}`;
    if (s.pid === roles.redis) return 'redis';
    if (s.pid === roles.bench) return s.tid === roles.bench ? 'bench main' : `bench ${s.comm}`;
    if (s.comm.startsWith('postgres')) return 'postgres';
    if (s.comm === 'perf') return 'perf';
    return 'other';
  };
  const lines: string[] = [];
  const mains: [string, number | undefined][] = [
    ['target', roles.target],
    ['redis', roles.redis],
    ['bench', roles.bench],
  ];
  for (const [name, tid] of mains) {
    if (tid === undefined) continue;
    const mine = waits.filter((w) => w.tid === tid);
    const d = mine.map((w) => w.to - w.from);
    const over = (ms: number) => d.filter((x) => x > ms).length;
    const total = d.reduce((a, b) => a + b, 0);
    const by = new Map<string, number>();
    let i0 = 0;
    for (const w of mine) {
      if (w.to - w.from <= 0.5) continue;
      while (i0 < slices.length && slices[i0].to < w.from - 50) i0++;
      for (let i = i0; i < slices.length && slices[i].from < w.to; i++) {
        const s = slices[i];
        const ms = Math.min(s.to, w.to) - Math.max(s.from, w.from);
        if (ms > 0 && s.comm !== '<idle>') by.set(group(s), (by.get(group(s)) ?? 0) + ms);
      }
    }
    const held = [...by]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([g, ms]) => `${g} ${ms.toFixed(0)}`)
      .join(', ');
    lines.push(
      `${name} main thread: ${mine.length} wake-ups, waited for a CPU > 0.5 ms ${over(0.5)}, > 1 ms ${over(1)}, > 2 ms ${over(2)} times; ` +
        `${((total / requests) * 1000).toFixed(0)} µs per request in all; during its waits > 0.5 ms the CPUs ran (ms): ${held || '-'}`,
    );
  }
  return lines;
}
