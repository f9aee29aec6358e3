import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Client } from 'pg';
import { AppConfig } from '@app/config';
import { DatabaseUrlService } from '@app/database';
import { QuotaStore } from './quota-store';

/** PostgreSQL advisory lock key (two int4): "gw" + 1, the quota counters' owner. */
const LOCK = [0x6777, 1] as const;
const RETRY_MS = 5000;

export class SplitBrainError extends Error {
  override name = 'SplitBrainError';
}

/**
 * No silent split brain. Without Redis each instance counts alone, so two instances on one
 * database would each allow every limit in full. The instance running the in-process store
 * holds an exclusive PostgreSQL advisory lock for as long as it runs; instances sharing Redis
 * hold it shared. So a second instance without Redis, or one with Redis next to one without,
 * refuses to start, naming the reason (unless QUOTA_INDEPENDENT_COUNTERS=true).
 *
 * The lock lives on a dedicated session (a pooled connection could be closed when idle,
 * releasing it); it ends with the process, also on a crash. The CLI never takes it (it
 * serves no traffic and loads the quota module without lifecycle hooks).
 */
@Injectable()
export class CounterOwnership implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('CounterOwnership');
  private client?: Client;
  private retry?: NodeJS.Timeout;
  private closing = false;

  constructor(
    private readonly store: QuotaStore,
    private readonly config: AppConfig,
    private readonly urls: DatabaseUrlService,
  ) {}

  private get exclusive(): boolean {
    return this.store.kind === 'memory';
  }

  async onModuleInit(): Promise<void> {
    if (this.exclusive && this.config.QUOTA_INDEPENDENT_COUNTERS) {
      this.logger.warn(
        'QUOTA_INDEPENDENT_COUNTERS=true: quota counters are in-process, so every instance on this database applies each limit on its own',
      );
      return;
    }
    await this.acquire();
  }

  async onModuleDestroy(): Promise<void> {
    this.closing = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = undefined;
    // Ending the session releases the lock. Bounded: a server that stopped answering (black-
    // holed, SIGSTOPped) must not hold the shutdown; the lock then goes with the connection.
    if (c) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        c.end().catch(() => undefined),
        new Promise((r) => {
          timer = setTimeout(r, 1000);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    }
  }

  private async acquire(): Promise<void> {
    const client = new Client({
      connectionString: await this.urls.resolve(),
      application_name: 'llm-gateway lock',
    });
    client.on('error', () => undefined);
    await client.connect();
    const fn = this.exclusive ? 'pg_try_advisory_lock' : 'pg_try_advisory_lock_shared';
    const { rows } = await client.query<{ ok: boolean }>(`SELECT ${fn}($1, $2) AS ok`, [...LOCK]);
    if (!rows[0].ok) {
      const holders = await client.query<{ mode: string }>(
        `SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted`,
        [...LOCK],
      );
      await client.end().catch(() => undefined);
      throw new SplitBrainError(this.refusal(holders.rows.some((r) => r.mode === 'ExclusiveLock')));
    }
    client.on('end', () => this.lost());
    this.client = client;
  }

  private refusal(otherWithoutRedis: boolean): string {
    const fix =
      'configure the same Redis (REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS) on every instance, ' +
      'or set QUOTA_INDEPENDENT_COUNTERS=true to apply each limit per instance';
    if (this.exclusive && !otherWithoutRedis)
      return `gateway instances sharing Redis already run on this database, and this one has no Redis configured: its in-process quota counters would not be shared; ${fix}`;
    if (this.exclusive)
      return `another gateway instance without Redis already runs on this database: each would count quotas alone, multiplying every limit; ${fix}`;
    return `another gateway instance without Redis already runs on this database: it counts quotas in its own process, so limits would not be shared; ${fix}`;
  }

  /** The lock session ended (PostgreSQL restarted): take the lock again once it answers. */
  private lost(): void {
    if (this.closing || !this.client) return;
    this.client = undefined;
    this.logger.warn('lost the PostgreSQL session holding the quota counters lock; taking it again');
    const again = () => {
      this.retry = setTimeout(() => {
        if (this.closing) return;
        this.acquire().catch((e: Error) => {
          if (e instanceof SplitBrainError) this.logger.error(e.message);
          again();
        });
      }, RETRY_MS);
      this.retry.unref();
    };
    again();
  }
}
