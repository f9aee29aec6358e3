/**
 * npm run bench:cluster — two gateway instances on a 3-master Redis Cluster against two on
 * one Redis node, same run (issue 15). Same placement as bench:proxy (bench/proxy.ts: the
 * fake upstream and autocannon in this process, each gateway in its own process, production
 * mode, one PostgreSQL): per topology two gateways share a database; both are driven at once
 * at saturation (one autocannon per instance), rounds alternating the topologies, each
 * keeping its best round. The table goes to docs/BENCHMARKS.md (this script rewrites only
 * its own section).
 */
import 'reflect-metadata';
import { cpus } from 'node:os';
import type { AddressInfo } from 'node:net';
import { dbUrl, startPostgres, startRedis, withClient } from '../test/harness/servers';
import { startCluster } from '../test/harness/redis-topologies';
import {
  children,
  createKey,
  load,
  prepareGateway,
  Run,
  runBench,
  startGateway,
  startUpstream,
  stopProcess,
  Target,
  useGateway,
  writeModels,
  writeSection,
} from './proxy';

const SECONDS = Number(process.env.BENCH_SAT_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_SAT_CONNECTIONS ?? 16); // per instance
const ROUNDS = 2;
const HEAD = '## Redis Cluster against one node (npm run bench:cluster)';

interface Topology {
  name: string;
  gateways: Target[];
  key: string;
  best?: { reqPerSec: number; runs: Run[] };
}

async function main(): Promise<void> {
  const build = prepareGateway();
  useGateway(build);
  const { pg, adminUrl } = await startPostgres();
  const redis = await startRedis();
  children.push(redis.proc);
  const cluster = await startCluster({ masters: 3, replicas: 0 });
  try {
    const upstream = await startUpstream();
    const modelsFile = writeModels(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    const topologies: Topology[] = [];
    const shapes: { name: string; env: Record<string, string> }[] = [
      { name: 'one Redis node', env: { REDIS_URL: redis.url } },
      { name: 'Redis Cluster, 3 masters', env: { REDIS_CLUSTER_NODES: cluster.nodesEnv } },
    ];
    for (const [i, t] of shapes.entries()) {
      await withClient(adminUrl, (c) => c.query(`CREATE DATABASE gw_bench_${i}`));
      const env = {
        DATABASE_URL: dbUrl(adminUrl, `gw_bench_${i}`),
        MODELS_FILE: modelsFile,
        BENCH_UPSTREAM_KEY: 'sk-upstream-bench',
        ...t.env,
      };
      const a = await startGateway(env);
      const b = await startGateway(env);
      topologies.push({ name: t.name, gateways: [a, b], key: await createKey(a.url) });
    }
    // warm-up: JIT, pools, the key cached on both instances
    for (const t of topologies)
      await Promise.all(t.gateways.map((g) => load(g, { seconds: 3, connections: CONNECTIONS }, t.key)));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of topologies) {
        await new Promise((r) => setTimeout(r, 1500));
        const runs = await Promise.all(
          t.gateways.map((g) => load(g, { seconds: SECONDS, connections: CONNECTIONS }, t.key)),
        );
        const reqPerSec = runs.reduce((s, r) => s + r.reqPerSec, 0);
        process.stdout.write(
          `${t.name.padEnd(26)} ${reqPerSec.toFixed(0).padStart(6)} req/s  ${runs
            .map(
              (r) =>
                `p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms non2xx ${r.non2xx} err ${r.errors}`,
            )
            .join(' | ')}\n`,
        );
        if (!t.best || reqPerSec > t.best.reqPerSec) t.best = { reqPerSec, runs };
      }
    }
    for (const t of topologies) for (const g of t.gateways) await stopProcess(g.proc);
    await new Promise((r) => upstream.close(r));
    upstream.closeAllConnections();

    const single = topologies[0].best!.reqPerSec;
    const rows = topologies.map((t) => {
      const b = t.best!;
      const p = (f: (r: Run) => number) => Math.max(...b.runs.map(f)).toFixed(2);
      const failed = b.runs.reduce((s, r) => s + r.non2xx + r.errors, 0);
      return `| ${t.name} | ${b.reqPerSec.toFixed(0)} | ${(b.reqPerSec / single).toFixed(2)} | ${p((r) => r.p50)} ms | ${p((r) => r.p99)} ms | ${failed} |`;
    });
    const section = `${HEAD}

Two gateway instances (\`${build.rev}\`, ${build.note}) on one PostgreSQL, each driven at
saturation by its own autocannon (${CONNECTIONS} connections, ${SECONDS} s, non-streamed
\`POST /v1/chat/completions\` with key auth, quota, budget, rpm and the ledger on), against
one Redis node and against a local 3-master Redis Cluster (no replicas), ${ROUNDS} rounds
alternating the topologies, each keeping its best round. Everything shares this machine's
${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), so the ratio is what
carries over, not the absolute figures. ${new Date().toISOString().slice(0, 10)}.

| Redis | req/s (both instances) | vs one node | p50 (worse instance) | p99 (worse instance) | non-2xx + errors |
|---|---|---|---|---|---|
${rows.join('\n')}

Every quota script touches one tenant's keys, all in one hash slot (\`{tenantId}\`), so a
request costs the same round trips on a cluster; what a cluster adds here is more Redis
processes on the same cores (and, in production, the capacity of more machines).
`;
    writeSection(section, HEAD);
    process.stdout.write(`\n${section}\nwritten to docs/BENCHMARKS.md\n`);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cluster.stop();
    await pg.stop();
  }
}

runBench('bench:cluster', main);
