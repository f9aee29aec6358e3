import {
  DynamicModule,
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { InjectRedis, RedisModule, RedisModuleOptions } from '@nestjs-modules/ioredis';
import Redis, { Cluster, ClusterOptions, RedisOptions } from 'ioredis';
import { AppConfig, RedisTarget } from '@app/config';
import { ReadinessRegistry } from '@app/observability';
import { endpoint, waitForDependency } from './startup-wait';

/**
 * Shared by the connection options and RedisConnection: once the app closes, no client
 * reconnects (a Sentinel client otherwise keeps asking sentinels that are gone).
 */
export interface RedisLifecycle {
  closing: boolean;
}
const REDIS_LIFECYCLE = Symbol('RedisLifecycle');

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
  private readonly logger = new Logger('Redis');
  constructor(
    private readonly readiness: ReadinessRegistry,
    private readonly config: AppConfig,
    @Inject(REDIS_LIFECYCLE) private readonly lifecycle: RedisLifecycle,
    @Optional() @InjectRedis() private readonly redis?: RedisClient,
  ) {}

  private readonly subscribers = new Set<RedisClient>();
  private lastErrorLog = 0;

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
    const opts = connectionOptions(target, this.lifecycle);
    // A subscriber waits for Redis instead of failing: it re-subscribes when it is back.
    let sub: RedisClient;
    if (opts.type === 'cluster')
      sub = new Cluster(opts.nodes, {
        ...opts.options,
        enableOfflineQueue: true,
        redisOptions: { ...opts.options?.redisOptions, maxRetriesPerRequest: null },
      });
    else {
      const options = { ...opts.options, enableOfflineQueue: true, maxRetriesPerRequest: null };
      sub = opts.url ? new Redis(opts.url, options) : new Redis(options);
    }
    this.subscribers.add(sub);
    sub.once('end', () => this.subscribers.delete(sub));
    return sub;
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
    this.lifecycle.closing = true;
    for (const sub of this.subscribers) sub.disconnect();
    const redis = this.redis;
    if (!redis || redis.status === 'end') return;
    await Promise.race([
      redis.quit(),
      // (unref: a closed app must not hold its process for the timer: Jest's "did not exit")
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref()),
    ]).catch(() => {
      // Already ended (another shutdown hook quit it): ioredis' disconnect() would then arm a
      // 2 s timer on the closed socket that nothing clears.
      if (redis.status !== 'end') redis.disconnect();
    });
  }

  /** At start, Redis is waited for like PostgreSQL (README "Clean failure"). */
  async onModuleInit(): Promise<void> {
    const redis = this.redis;
    if (!redis) return;
    // Connection errors show up as failed commands (QUOTA_FAIL_MODE, readiness); one line
    // every 10 s here instead of ioredis' "Unhandled error event" stack on every retry.
    redis.on('error', (e: Error) => {
      if (this.lifecycle.closing || Date.now() - this.lastErrorLog < 10_000) return;
      this.lastErrorLog = Date.now();
      this.logger.warn(`Redis connection: ${e.message}`);
    });
    // ioredis gives a connection up for good ('end') only when told to, except one race: a
    // Sentinel failover's disconnect arriving while the client is already reconnecting makes
    // the connector's connect fail ("Connection is closed."), and a connect that fails ends
    // the client (seen in CI: one instance answered 503 for 30 s after a promotion). Outside
    // our own shutdown, an ended Sentinel connection connects again, every second until it does.
    if (this.config.redis?.kind === 'sentinel') {
      redis.on('end', () => {
        if (this.lifecycle.closing) return;
        this.logger.warn('Redis (Sentinel) connection ended outside shutdown: connecting again');
        const retry = () => {
          if (this.lifecycle.closing || redis.status !== 'end') return;
          redis.connect().catch(() => setTimeout(retry, 1000).unref());
        };
        setTimeout(retry, 1000).unref();
      });
    }
    await waitForDependency(
      this.config.REDIS_URL ? `Redis at ${endpoint(this.config.REDIS_URL)}` : 'Redis',
      () => redis.ping(),
      this.config.STARTUP_TIMEOUT_MS,
      this.logger,
    );
    this.readiness.register({
      name: 'redis',
      check: async () => {
        const started = Date.now();
        const pong = await Promise.race([
          redis.ping(),
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('timeout after 1000 ms')), 1000).unref(),
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
export function connectionOptions(
  target: RedisTarget,
  lifecycle: RedisLifecycle = { closing: false },
): RedisModuleOptions {
  // Commands issued in the same tick (key lookups, quota scripts of concurrent requests)
  // share one write: about 14% less CPU per request (docs/BENCHMARKS.md). On a cluster,
  // ioredis groups them per node.
  // A command without an answer fails after REDIS_COMMAND_TIMEOUT_MS (a stalled Redis is a store
  // failure, not a wait); it also frees an auto-pipelined batch that would otherwise hold every
  // later command of the connection.
  const timeout = target.commandTimeoutMs ? { commandTimeout: target.commandTimeoutMs } : {};
  const common = { ...FAIL_FAST, enableAutoPipelining: true, ...timeout };
  // ioredis' default back-off, stopped once the app closes.
  const retry = (times: number) => (lifecycle.closing ? null : Math.min(times * 50, 2000));
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
        retryStrategy: retry,
        sentinelRetryStrategy: retry,
        sentinelReconnectStrategy: retry,
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
    redisOptions: { ...auth, maxRetriesPerRequest: 1, connectTimeout: 2000, ...timeout },
    clusterRetryStrategy: retry,
    ...(target.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
  };
  return { type: 'cluster', nodes: target.nodes, options };
}

@Global()
@Module({})
export class RedisConnectionModule {
  static forRoot(config: AppConfig): DynamicModule {
    const target = config.redis;
    const lifecycle: RedisLifecycle = { closing: false };
    const imports = target ? [RedisModule.forRoot(connectionOptions(target, lifecycle))] : [];
    return {
      module: RedisConnectionModule,
      imports,
      providers: [RedisConnection, { provide: REDIS_LIFECYCLE, useValue: lifecycle }],
      exports: [RedisConnection],
    };
  }
}
