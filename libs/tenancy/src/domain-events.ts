import { Injectable } from '@nestjs/common';
import { EventEmitter } from 'node:events';

export interface DomainEventMap {
  /** A tenant was changed or disabled: key caches drop its keys. */
  'tenant.changed': { tenantId: string };
  /** A user was changed, disabled or deleted: key caches drop the user's keys. */
  'user.changed': { tenantId: string; userId: string };
}

/**
 * In-process domain events (one bus per app instance, so two apps in one test process
 * stay apart). Cross-instance propagation is the api-keys lib's Redis pub/sub.
 */
@Injectable()
export class DomainEvents {
  private readonly bus = new EventEmitter();

  emit<K extends keyof DomainEventMap>(type: K, payload: DomainEventMap[K]): void {
    this.bus.emit(type, payload);
  }

  on<K extends keyof DomainEventMap>(
    type: K,
    handler: (payload: DomainEventMap[K]) => void | Promise<void>,
  ): void {
    this.bus.on(type, (p: DomainEventMap[K]) => void Promise.resolve(handler(p)).catch(() => undefined));
  }
}
