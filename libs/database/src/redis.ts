import {
  DynamicModule,
  Global,
  Injectable,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { InjectRedis, RedisModule, RedisModuleOptions } from '@nestjs-modules/ioredis';
import Redis, { Cluster, ClusterOptions, RedisOptions } from 'ioredis';
import { AppConfig, RedisTarget } from '@app/config';
import { ReadinessRegistry } from '@app/observability';

/** A single node (REDIS_URL or Sentinel's current master) or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** Who holds which slots: a cluster's masters by node id; one range for a single node or Sentinel's master (its run id). */
export interface SlotOwner {
  from: number;
  to: number;
  /** Cluster node id, or the run id of the master (changes when a replica is promoted or the server restarts). */
  id: string;
}

/**
 * The shared Redis connection, or null when no Redis is configured (single instance,
 * in-process stores). Every command of the gateway on it names keys of one hash slot
 * (README "A key's counters in Redis"), so the same code runs on a single node, behind
 * Sentinel, and on a Redis Cluster.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly readiness: ReadinessRegistry,
    private readonly config: AppConfig,
    @Optional() @InjectRedis() private readonly redis?: RedisClient,
  ) {}

  get client(): RedisClient | null {
    return this.redis ?? null;
  }

  /** The configured shape: 'single' (REDIS_URL), 'cluster' or 'sentinel'; null without Redis. */
  get kind(): RedisTarget['kind'] | null {
    return this.redis ? (this.config.redis?.kind ?? 'single') : null;
  }

  /**
   * A dedicated connection for SUBSCRIBE (a subscribed connection can run nothing else).
   * On a cluster, ioredis subscribes on one node and re-subscribes elsewhere when that
   * node fails; PUBLISH reaches every node's subscribers over the cluster bus.
   */
  subscriber(): RedisClient {
    const target = this.config.redis;
    if (!target) throw new Error('no Redis configured');
    const opts = connectionOptions(target);
    // A subscriber waits for Redis instead of failing: it re-subscribes when it is back.
    if (opts.type === 'cluster')
      return new Cluster(opts.nodes, {
        ...opts.options,
        enableOfflineQueue: true,
        redisOptions: { ...opts.options?.redisOptions, maxRetriesPerRequest: null },
      });
    const options = { ...opts.options, enableOfflineQueue: true, maxRetriesPerRequest: null };
    return opts.url ? new Redis(opts.url, options) : new Redis(options);
  }

  /**
   * Which master serves which slots, read from Redis: CLUSTER SLOTS on a cluster, the run
   * id of the current master otherwise. A change of owner without a resharding means a
   * replica was promoted (or a node restarted) and may have lost the last writes.
   */
  async slotOwners(): Promise<SlotOwner[]> {
    const redis = this.redis;
    if (!redis) return [];
    if (redis instanceof Cluster) {
      const slots = await redis.cluster('SLOTS');
      return slots
        .map(([from, to, master]) => ({ from, to, id: String(master?.[2]) }))
        .sort((a, b) => a.from - b.from);
    }
    const info = await redis.info('server');
    const runId = /run_id:(\w+)/.exec(info)?.[1] ?? 'unknown';
    return [{ from: 0, to: 16383, id: runId }];
  }

  /**
   * Close our own connection: @nestjs-modules/ioredis tracks connections in a set shared by
   * every app in the process, and `quit()` fails while Redis is unreachable (then disconnect).
   */
  async onApplicationShutdown(): Promise<void> {
    const redis = this.redis;
    if (!redis || redis.status === 'end') return;
    await Promise.race([
      redis.quit(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000)),
    ]).catch(() => redis.disconnect());
  }

  onModuleInit(): void {
    const redis = this.redis;
    if (!redis) return;
    this.readiness.register({
      name: 'redis',
      check: async () => {
        const started = Date.now();
        const pong = await Promise.race([
          redis.ping(),
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('timeout after 1000 ms')), 1000),
          ),
        ]);
        if (pong !== 'PONG') throw new Error(`unexpected reply ${pong}`);
        return { responseTime: Date.now() - started };
      },
    });
  }
}

/** What the gateway's main connection does when Redis is away: fail fast, never queue. */
const FAIL_FAST: RedisOptions = {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  connectTimeout: 2000,
  lazyConnect: false,
};

/**
 * @nestjs-modules/ioredis options for the configured shape (ioredis' own Cluster and
 * Sentinel support; no routing of our own).
 */
export function connectionOptions(target: RedisTarget): RedisModuleOptions {
  // Commands issued in the same tick (key lookups, quota scripts of concurrent requests)
  // share one write: about 14% less CPU per request (docs/BENCHMARKS.md). On a cluster,
  // ioredis groups them per node.
  const common = { ...FAIL_FAST, enableAutoPipelining: true };
  if (target.kind === 'single') return { type: 'single', url: target.url, options: common };
  const auth: RedisOptions = {
    username: target.username,
    password: target.password,
    ...(target.tls ? { tls: {} } : {}),
  };
  if (target.kind === 'sentinel')
    return {
      type: 'single',
      options: {
        ...common,
        ...auth,
        sentinels: target.sentinels,
        name: target.name,
        sentinelPassword: target.sentinelPassword,
        ...(target.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
        // Ask the sentinels on every reconnect, and listen for +switch-master to move at once.
        failoverDetector: true,
      },
    };
  const options: ClusterOptions = {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    // Failover: MOVED / CLUSTERDOWN are retried after a fresh slot map, briefly; past that
    // the command fails and QUOTA_FAIL_MODE applies.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 2000,
    redisOptions: { ...auth, maxRetriesPerRequest: 1, connectTimeout: 2000 },
    ...(target.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
  };
  return { type: 'cluster', nodes: target.nodes, options };
}

@Global()
@Module({})
export class RedisConnectionModule {
  static forRoot(config: AppConfig): DynamicModule {
    const target = config.redis;
    const imports = target ? [RedisModule.forRoot(connectionOptions(target))] : [];
    return {
      module: RedisConnectionModule,
      imports,
      providers: [RedisConnection],
      exports: [RedisConnection],
    };
  }
}
