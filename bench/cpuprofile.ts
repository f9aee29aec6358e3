/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by module.
 * Usage from the command line: node -r ts-node/register bench/cpuprofile.ts FILE [N] [FROM-TO]
 * (FROM-TO: a window in CLOCK_MONOTONIC µs, e.g. a run's as bench:streams prints it).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  /** Share of the busy (non-idle) samples, 0..1. */
  share: number;
  ms: number;
}

export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  functions: ProfileEntry[];
  modules: ProfileEntry[];
  /** Additive breakdown by `categories` (empty without them). */
  categories: ProfileEntry[];
}

/**
 * Categories by the frame's URL. A sample belongs to the innermost frame of its stack that
 * is neither node core nor native (so a socket write is charged to the library that wrote,
 * JSON.parse to its caller), and the first category matching that frame names it; a
 * category with `core: true` also claims node-core frames on the way (e.g. node:_http_outgoing
 * for the answer written to the client). Samples with only node-core frames form their own category.
 */
export type Categories = Array<{ label: string; url: RegExp; core?: boolean }>;
export const NODE_CORE = 'node core only (HTTP parsing, sockets, streams, timers)';

const ROOT = `${process.cwd()}/`;

/** The module a frame belongs to: an npm package, a gateway lib or app, a node internal, or a V8 pseudo-frame. */
export function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const lib = /\/dist\/libs\/([^/]+)\//.exec(path) ?? /\/libs\/([^/]+)\/src\//.exec(path);
  if (lib) return `@app/${lib[1]}`;
  const app = /\/dist\/apps\/([^/]+)\//.exec(path) ?? /\/apps\/([^/]+)\/src\//.exec(path);
  if (app) return `apps/${app[1]}`;
  if (path.startsWith('node:')) {
    const parts = path.slice('node:'.length).split('/');
    return `node:${parts[0] === 'internal' && parts.length > 2 ? `internal/${parts[1]}` : parts.join('/')}`;
  }
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return path.slice(nm + '/node_modules/'.length);
  const dist = path.indexOf('/dist/');
  if (dist >= 0) return path.slice(dist + 1);
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path;
}

/**
 * Self time by function and module. `window` keeps only the samples taken between two
 * instants of CLOCK_MONOTONIC in µs (`process.hrtime.bigint() / 1000n` in any process on
 * the machine: V8 stamps its samples with the same clock).
 */
export function summariseProfile(
  file: string,
  top = 15,
  window?: { fromUs: number; toUs: number },
  categories: Categories = [],
): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const categoryOf = (id: number): string => {
    const leaf = byId.get(id)!.callFrame;
    if (!leaf.url && leaf.functionName.startsWith('(')) return leaf.functionName;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName } = byId.get(at)!.callFrame;
      if (!url) continue;
      if (url.startsWith('node:')) {
        const core = categories.find((c) => c.core && c.url.test(url));
        if (core) return core.label;
        continue;
      }
      return (
        categories.find((c) => !c.core && c.url.test(url))?.label ?? `other: ${moduleOf(url, functionName)}`
      );
    }
    return NODE_CORE;
  };
  // Self time per node from the samples and their time deltas (delta i+1 belongs to sample i).
  const self = new Map<number, number>();
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt);
  }
  const fns = new Map<string, number>();
  const mods = new Map<string, number>();
  const cats = new Map<string, number>();
  let totalMs = 0;
  let idleMs = 0;
  for (const [id, ms] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    totalMs += ms;
    if (functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const fn = url ? `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}` : functionName;
    fns.set(fn, (fns.get(fn) ?? 0) + ms);
    const mod = moduleOf(url, functionName);
    mods.set(mod, (mods.get(mod) ?? 0) + ms);
    if (categories.length) {
      const cat = categoryOf(id);
      cats.set(cat, (cats.get(cat) ?? 0) + ms);
    }
  }
  const busyMs = totalMs - idleMs;
  const rank = (m: Map<string, number>): ProfileEntry[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms, share: busyMs ? ms / busyMs : 0 }));
  return {
    totalMs,
    busyMs,
    functions: rank(fns),
    modules: rank(mods),
    categories: [...cats]
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => ({ name, ms, share: busyMs ? ms / busyMs : 0 })),
  };
}

if (require.main === module) {
  const [fromUs, toUs] = (process.argv[4] ?? '').split('-').map(Number);
  const s = summariseProfile(
    process.argv[2],
    Number(process.argv[3] ?? 20),
    toUs ? { fromUs, toUs } : undefined,
  );
  const line = (e: ProfileEntry) => `${(e.share * 100).toFixed(1).padStart(5)}%  ${e.name}`;
  process.stdout.write(
    `busy ${s.busyMs.toFixed(0)} ms of ${s.totalMs.toFixed(0)} ms\n\nmodules:\n${s.modules.map(line).join('\n')}\n\nfunctions:\n${s.functions.map(line).join('\n')}\n`,
  );
}
