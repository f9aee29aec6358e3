import { Injectable, Logger } from '@nestjs/common';

export interface DomainEventMap {
  /** A tenant was changed or disabled: key caches drop its keys. */
  'tenant.changed': { tenantId: string };
  /** A user was changed or disabled (after the commit): key caches drop the user's keys. */
  'user.changed': { tenantId: string; userId: string };
  /**
   * A user is about to be deleted (their keys with them): handlers read what they need now
   * and push what must happen once the delete has committed (cache evictions) to `afterCommit`.
   */
  'user.deleting': { tenantId: string; userId: string; afterCommit: (() => Promise<void>)[] };
  /**
   * The reset period of a tenant, user or key changed: its counters move to a new bucket,
   * which must start from the ledger (the quota lib rebuilds the tenant's counters).
   */
  'quota.period-changed': { tenantId: string };
}

type Handler<K extends keyof DomainEventMap> = (payload: DomainEventMap[K]) => void | Promise<void>;

/**
 * In-process domain events (one bus per app instance, so two apps in one test process
 * stay apart). `emit` resolves when every handler is done, so a caller can act after the
 * caches let go. Cross-instance propagation is the api-keys lib's Redis pub/sub.
 */
@Injectable()
export class DomainEvents {
  private readonly logger = new Logger('DomainEvents');
  private readonly handlers = new Map<keyof DomainEventMap, Handler<never>[]>();

  on<K extends keyof DomainEventMap>(type: K, handler: Handler<K>): void {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), handler as Handler<never>]);
  }

  async emit<K extends keyof DomainEventMap>(type: K, payload: DomainEventMap[K]): Promise<void> {
    const list = (this.handlers.get(type) ?? []) as Handler<K>[];
    await Promise.all(
      list.map(async (h) => {
        try {
          await h(payload);
        } catch (e) {
          this.logger.error(`handler of ${type} failed: ${(e as Error).message}`);
        }
      }),
    );
  }
}
