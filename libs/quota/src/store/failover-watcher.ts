import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy, Optional } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { RedisConnection, sendPipelined, SlotOwner } from '@app/database';
import { MARKER_KEY, tenantMarkerKey } from '../keys';
import { UsageRepository } from '../usage/usage.repository';

/** How often each instance compares who serves which slots (one CLUSTER SLOTS or INFO a second). */
export const FAILOVER_POLL_MS = 1000;
const SLOTS = 16384;

/** CRC16/XMODEM, as Redis Cluster hashes a key (only the `{tag}` when the key has one). */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(key, 'utf8')) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % SLOTS;
}

function ownerBySlot(owners: SlotOwner[]): (string | undefined)[] {
  const out = new Array<string | undefined>(SLOTS);
  for (const o of owners) for (let s = o.from; s <= o.to; s++) out[s] = o.id;
  return out;
}

/**
 * Failover (cluster or Sentinel): a promoted replica may lack the last writes of the master
 * it replaces (replication is asynchronous), yet it holds the tenants' rebuild markers, so
 * the counters would silently stay low. Each instance watches who serves which slots; when
 * a slot's master changes, the first instance to notice drops the rebuild markers of the
 * tenants in those slots (one DEL per key) and the global marker: each such tenant's next
 * request rebuilds its counters from the ledger, after LEDGER_FLUSH_MS + 1 s so that rows
 * still queued on any instance are counted (QuotaService.initialize).
 *
 * Single-node Redis (REDIS_URL) is not watched: a restart there loses the markers with the
 * counters, which the markers already detect.
 */
@Injectable()
export class FailoverWatcher implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('RedisFailover');
  private known: (string | undefined)[] | null = null;
  private timer?: NodeJS.Timeout;
  private busy = false;
  /** Failovers handled by this instance (tests, docs). */
  handled = 0;

  constructor(
    private readonly repo: UsageRepository,
    @Optional() private readonly redis?: RedisConnection,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const kind = this.redis?.kind;
    if (kind !== 'cluster' && kind !== 'sentinel') return;
    await this.check();
    this.timer = setInterval(() => void this.check(), FAILOVER_POLL_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Compares the slot owners with the last ones seen; acts on a change. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const owners = await this.redis!.slotOwners();
      if (!owners.length) return;
      const now = ownerBySlot(owners);
      const before = this.known;
      if (!before) {
        this.known = now;
        return;
      }
      const moved = new Set<number>();
      for (let s = 0; s < SLOTS; s++) if (before[s] && now[s] && before[s] !== now[s]) moved.add(s);
      if (moved.size) await this.forget(moved, owners, before);
      this.known = now;
    } catch {
      // Redis is failing over or away: the next poll sees the outcome.
    } finally {
      this.busy = false;
    }
  }

  private async forget(
    moved: Set<number>,
    owners: SlotOwner[],
    before: (string | undefined)[],
  ): Promise<void> {
    const client = this.redis!.client!;
    const changes = owners
      .filter((o) => moved.has(o.from) || moved.has(o.to))
      .map((o) => `${o.from}-${o.to} ${before[o.from]?.slice(0, 8)} -> ${o.id.slice(0, 8)}`);
    // Every instance sees the change; one handles it (a second pass would rebuild again).
    const layout = owners.map((o) => `${o.from}:${o.id}`).join(',');
    const claim = `quota-meta:failover:${createHash('sha1').update(layout).digest('hex')}`;
    const won = await sendPipelined(client, 'set', [claim, new Date().toISOString(), 'EX', 3600, 'NX']);
    if (won !== 'OK') return;
    const tenants = (await this.repo.tenantIds()).filter((t) => moved.has(keySlot(tenantMarkerKey(t))));
    this.logger.warn(
      `Redis failover (${changes.join('; ')}): the counters of ${tenants.length} tenant(s) on the moved slots are rebuilt from the ledger`,
    );
    await sendPipelined(client, 'del', [MARKER_KEY]);
    // One DEL per key: the markers of different tenants live in different slots.
    await Promise.all(tenants.map((t) => sendPipelined(client, 'del', [tenantMarkerKey(t)])));
    this.handled++;
  }
}
