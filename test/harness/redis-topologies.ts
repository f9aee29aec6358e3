import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis, { Cluster } from 'ioredis';
import { freePort } from './servers';

/**
 * A local Redis Cluster and a Sentinel setup on loopback, started by the suites that need
 * them (not by the e2e globalSetup, which stays fast). Timeouts are small so that a
 * failover takes about two seconds.
 */

export interface RedisNode {
  port: number;
  proc: ChildProcess;
  /** Kill -9 (no goodbye to the cluster / sentinels). */
  kill(): Promise<void>;
}

async function startNode(
  args: string[],
  port: number,
  ready = 'Ready to accept connections',
): Promise<RedisNode> {
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`redis-server :${port} did not start: ${out.slice(-500)}`)),
      10000,
    );
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server :${port} exited ${code}: ${out.slice(-500)}`));
    });
  });
  proc.stdout!.removeAllListeners('data');
  proc.stdout!.resume();
  proc.stderr!.resume();
  proc.removeAllListeners('exit');
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    port,
    proc,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

const BASE = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];

export interface LocalCluster {
  nodes: RedisNode[];
  /** REDIS_CLUSTER_NODES for the gateway: every node's address. */
  nodesEnv: string;
  /** A cluster client for assertions (reads from masters). */
  client(): Cluster;
  /** The master node (port) serving the hash slot of this key. */
  masterPortOf(key: string): Promise<number>;
  /** Ports of the current masters. */
  masterPorts(): Promise<number[]>;
  /**
   * Resharding of one empty slot to the master on `toPort` (IMPORTING / MIGRATING, then
   * SETSLOT NODE on the target, the source and the other masters), until every node agrees.
   */
  moveEmptySlot(slot: number, toPort: number): Promise<void>;
  /** Resolves once every slot is served and every live node agrees the cluster is ok. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** N masters (+ replicas per master), `redis-cli --cluster create`, cluster-node-timeout small. */
export async function startCluster(
  o: { masters?: number; replicas?: 0 | 1; nodeTimeoutMs?: number } = {},
): Promise<LocalCluster> {
  const masters = o.masters ?? 3;
  const count = masters * (1 + (o.replicas ?? 0));
  const dir = mkdtempSync(join(tmpdir(), 'gw-cluster-'));
  const ports: number[] = [];
  while (ports.length < count) {
    const p = await freePort();
    if (!ports.includes(p) && !ports.includes(p - 10000) && p + 10000 < 65536) ports.push(p);
  }
  const nodes = await Promise.all(
    ports.map((port) =>
      startNode(
        [
          '--port',
          String(port),
          ...BASE,
          '--dir',
          dir,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          String(o.nodeTimeoutMs ?? 1000),
          // A replica with stale data may still be promoted (loopback tests kill masters at will).
          '--cluster-replica-validity-factor',
          '0',
          '--cluster-require-full-coverage',
          'no',
        ],
        port,
      ),
    ),
  );
  const create = spawnSync(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      String(o.replicas ?? 0),
      '--cluster-yes',
    ],
    { encoding: 'utf8', timeout: 30000 },
  );
  if (create.status !== 0) {
    await Promise.all(nodes.map((n) => n.kill()));
    throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
  }
  const live = () => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const onNode = async <T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> => {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
    await r.connect();
    try {
      return await fn(r);
    } finally {
      r.disconnect();
    }
  };
  const slotsOf = async (): Promise<[number, number, number][]> => {
    for (const n of live()) {
      try {
        const slots = await onNode(n.port, (r) => r.cluster('SLOTS'));
        return slots.map(([from, to, m]) => [from, to, Number(m?.[1])]);
      } catch {
        // try the next node
      }
    }
    throw new Error('no cluster node answers');
  };
  const cluster: LocalCluster = {
    nodes,
    nodesEnv: ports.map((p) => `127.0.0.1:${p}`).join(','),
    client: () =>
      new Cluster(
        ports.map((port) => ({ host: '127.0.0.1', port })),
        { redisOptions: { maxRetriesPerRequest: 3 }, retryDelayOnFailover: 200 },
      ),
    masterPortOf: async (key) => {
      const slot = await onNode(live()[0].port, (r) => r.cluster('KEYSLOT', key));
      const range = (await slotsOf()).find(([from, to]) => slot >= from && slot <= to);
      if (!range) throw new Error(`slot ${slot} is not served`);
      return range[2];
    },
    masterPorts: async () => [...new Set((await slotsOf()).map(([, , p]) => p))],
    moveEmptySlot: async (slot, toPort) => {
      const owners = await slotsOf();
      const fromPort = owners.find(([from, to]) => slot >= from && slot <= to)?.[2];
      if (fromPort === undefined) throw new Error(`slot ${slot} is not served`);
      if (fromPort === toPort) return;
      const idOf = (port: number) => onNode(port, (r) => r.cluster('MYID') as Promise<string>);
      const [fromId, toId] = await Promise.all([idOf(fromPort), idOf(toPort)]);
      const keys = await onNode(fromPort, (r) => r.cluster('COUNTKEYSINSLOT', slot));
      if (keys !== 0) throw new Error(`slot ${slot} holds ${keys} keys`);
      await onNode(toPort, (r) => r.cluster('SETSLOT', slot, 'IMPORTING', fromId));
      await onNode(fromPort, (r) => r.cluster('SETSLOT', slot, 'MIGRATING', toId));
      const others = [...new Set(owners.map(([, , p]) => p))].filter((p) => p !== fromPort && p !== toPort);
      for (const port of [toPort, fromPort, ...others])
        await onNode(port, (r) => r.cluster('SETSLOT', slot, 'NODE', toId));
      const until = Date.now() + 20000;
      const ownerSeenBy = (port: number) =>
        onNode(port, async (r) => {
          const slots = await r.cluster('SLOTS');
          return Number(slots.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1]);
        });
      // every node, replicas too, names the new owner
      while (!(await Promise.all(live().map((n) => ownerSeenBy(n.port)))).every((p) => p === toPort)) {
        if (Date.now() > until) throw new Error(`slot ${slot} did not move to :${toPort}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await cluster.waitHealthy();
    },
    waitHealthy: async (timeoutMs = 20000) => {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          live().map((n) =>
            onNode(n.port, async (r) => {
              const info = await r.cluster('INFO');
              const slots = await r.cluster('SLOTS');
              const served = slots.reduce((s, [from, to]) => s + to - from + 1, 0);
              const masters = new Set(slots.map(([, , m]) => m?.[1]));
              const alive = [...masters].every((p) => live().some((l) => l.port === p));
              return info.includes('cluster_state:ok') && served === 16384 && alive;
            }).catch(() => false),
          ),
        );
        if (states.every(Boolean)) return;
        if (Date.now() > until) throw new Error('the cluster did not become healthy');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: async () => {
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await cluster.waitHealthy();
  return cluster;
}

export interface LocalSentinel {
  master: RedisNode;
  replica: RedisNode;
  sentinels: RedisNode[];
  /** REDIS_SENTINELS for the gateway. */
  sentinelsEnv: string;
  name: string;
  /** The port of the master the sentinels currently name. */
  masterPort(): Promise<number>;
  stop(): Promise<void>;
}

/** A master, one replica and `count` sentinels (quorum: a majority), down-after 1000 ms. */
export async function startSentinel(
  o: { sentinels?: number; downAfterMs?: number } = {},
): Promise<LocalSentinel> {
  const name = 'gwmaster';
  const dir = mkdtempSync(join(tmpdir(), 'gw-sentinel-'));
  const mPort = await freePort();
  const master = await startNode(['--port', String(mPort), ...BASE, '--dir', dir], mPort);
  const rPort = await freePort();
  const replica = await startNode(
    ['--port', String(rPort), ...BASE, '--dir', dir, '--replicaof', '127.0.0.1', String(mPort)],
    rPort,
  );
  // Wait for the replica to be in sync, so that it can be promoted.
  const r = new Redis(rPort, '127.0.0.1');
  try {
    for (let i = 0; !/master_link_status:up/.test(await r.info('replication')); i++) {
      if (i > 400) throw new Error('the replica did not sync within 20 s');
      await new Promise((res) => setTimeout(res, 50));
    }
  } catch (e) {
    await Promise.all([master.kill(), replica.kill()]);
    throw e;
  } finally {
    r.disconnect();
  }
  const count = o.sentinels ?? 3;
  const quorum = Math.floor(count / 2) + 1;
  const sentinels: RedisNode[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${mPort} ${quorum}`,
        `sentinel down-after-milliseconds ${name} ${o.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push(await startNode([conf, '--sentinel'], port, 'Sentinel ID is'));
  }
  return {
    master,
    replica,
    sentinels,
    name,
    sentinelsEnv: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    masterPort: async () => {
      const s = new Redis(sentinels[0].port, '127.0.0.1');
      try {
        const addr = (await s.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string];
        return Number(addr[1]);
      } finally {
        s.disconnect();
      }
    },
    stop: async () => {
      await Promise.all([...sentinels, replica, master].map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
