import {
  DynamicModule,
  Global,
  Injectable,
  Logger,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { InjectRedis, RedisModule } from '@nestjs-modules/ioredis';
import type Redis from 'ioredis';
import { AppConfig } from '@app/config';
import { ReadinessRegistry } from '@app/observability';
import { endpoint, waitForDependency } from './startup-wait';

/**
 * The shared Redis connection, or null when REDIS_URL is unset (single instance,
 * in-process stores). Libs needing a subscriber connection call `client.duplicate()`.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly readiness: ReadinessRegistry,
    private readonly config: AppConfig,
    @Optional() @InjectRedis() private readonly redis?: Redis,
  ) {}

  get client(): Redis | null {
    return this.redis ?? null;
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

  /** At start, Redis is waited for like PostgreSQL (README "Clean failure"). */
  async onModuleInit(): Promise<void> {
    const redis = this.redis;
    if (!redis) return;
    await waitForDependency(
      `Redis at ${endpoint(this.config.REDIS_URL ?? '')}`,
      () => redis.ping(),
      this.config.STARTUP_TIMEOUT_MS,
      new Logger('Redis'),
    );
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

@Global()
@Module({})
export class RedisConnectionModule {
  static forRoot(config: AppConfig): DynamicModule {
    const imports = config.REDIS_URL
      ? [
          RedisModule.forRoot({
            type: 'single',
            url: config.REDIS_URL,
            // Fail fast instead of queueing commands forever while Redis is down.
            options: {
              maxRetriesPerRequest: 1,
              enableOfflineQueue: false,
              connectTimeout: 2000,
              lazyConnect: false,
              // Commands issued in the same tick (key lookups, quota scripts of concurrent
              // requests) share one write: about 14% less CPU per request (docs/BENCHMARKS.md).
              enableAutoPipelining: true,
            },
          }),
        ]
      : [];
    return {
      module: RedisConnectionModule,
      imports,
      providers: [RedisConnection],
      exports: [RedisConnection],
    };
  }
}
