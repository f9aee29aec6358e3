import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';
import { sendAlone, sendPipelined } from '@app/database';
import {
  expiriesKey,
  ledgerStreamKey,
  MARKER_KEY,
  reservationsKey,
  settledKey,
  tenantMarkerKey,
} from '../keys';
import { PENDING, READ, REBUILD, RELEASE, RESERVE, SETTLE } from './lua';
import {
  LevelUsage,
  QuotaStore,
  RebuildChange,
  RebuildEntry,
  RebuildOptions,
  ReleaseResult,
  ReservationRef,
  ReserveRequest,
  ReserveResult,
  SETTLED_MARKER_MS,
  SettleOptions,
  SettleResult,
  TpmState,
  TpmWindow,
} from './quota-store';

const SCRIPTS = {
  gwQuotaReserve: RESERVE,
  gwQuotaSettle: SETTLE,
  gwQuotaRelease: RELEASE,
  gwQuotaRead: READ,
  gwQuotaPending: PENDING,
  gwQuotaRebuild: REBUILD,
} as const;
type ScriptName = keyof typeof SCRIPTS;
const SHAS = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, lua]) => [name, createHash('sha1').update(lua).digest('hex')]),
) as Record<ScriptName, string>;

const lim = (n: number | null) => (n === null ? -1 : n);
const exp = (n: number | null) => n ?? 0;

function usageOf(flat: unknown[], from: number, levels: number): LevelUsage[] {
  const out: LevelUsage[] = [];
  for (let i = from; i + 1 < flat.length && out.length < levels; i += 2)
    out.push({ tokens: Number(flat[i]), spendMicros: Number(flat[i + 1]) });
  return out;
}

function tpmOf(flat: unknown[], from: number, windows: TpmWindow[]): TpmState[] {
  return windows.map((w, j) => ({
    limit: w.limit,
    used: Number(flat[from + 2 * j]),
    resetMs: Number(flat[from + 2 * j + 1]),
  }));
}

/** A window's keys: its sorted set and its hash (same slot). */
const tpmKeys = (key: string) => [key, `${key}:t`];

/**
 * Counters in Redis, shared by every gateway instance. Each method is one Lua script
 * (EVALSHA, reloaded by ioredis on NOSCRIPT), so check-and-add is atomic across instances.
 */
export class RedisQuotaStore extends QuotaStore {
  readonly kind = 'redis' as const;
  readonly carriesLedger = true;

  /** Scripts of this store sent and not answered yet. */
  private inFlight = 0;
  /** The connection's socket is corked until this turn's setImmediate (send). */
  private corked = false;
  /** The event loop is kept turning while scripts are in flight (spin). */
  private spinning = false;
  private readonly spinMs: number;

  /** `spinMs`: QUOTA_WAIT_SPIN_MS (0 in tests that build the store themselves). */
  constructor(
    private readonly redis: Redis | Cluster,
    options: { spinMs?: number } = {},
  ) {
    super();
    this.spinMs = options.spinMs ?? 0;
  }

  /**
   * EVALSHA, or EVAL when the server does not have the script yet (NOSCRIPT: a restarted
   * node, SCRIPT FLUSH, each cluster node on first use). Plain EVALSHA/EVAL, not ioredis
   * defineCommand: ioredis' auto-pipelining routes them by their first key, so each call
   * goes to the master of the tenant's slot (a defined command called as `cmd(numKeys, ...)`
   * is routed by the number, mixing tenants of several nodes in one pipeline).
   */
  private async run(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    this.inFlight++;
    if (this.spinMs && !this.spinning) this.spin();
    try {
      try {
        return await this.send('evalsha', [SHAS[name], keys.length, ...keys, ...args]);
      } catch (e) {
        if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
        return await this.send('eval', [SCRIPTS[name], keys.length, ...keys, ...args]);
      }
    } finally {
      this.inFlight--;
    }
  }

  /**
   * A script alone on the wire is written at once (sendCommand: routed by its first key on a
   * cluster, like the auto-pipelined call). Auto-pipelining holds every command until
   * setImmediate to share one write with the commands of concurrent requests: worth it
   * under load, but at low rates it only adds that wait (~0.1 ms per script measured here,
   * `npm run bench:redis-rtt`; twice per request). With others in flight the scripts of this
   * turn share one write: on one node (or Sentinel) the connection's socket is corked until
   * setImmediate, which is what auto-pipelining does without its Pipeline, promises and
   * bookkeeping per batch (issue 18: ~2% of the gateway's CPU at saturation); on a cluster
   * the call is auto-pipelined (its pipelines are per node).
   */
  private send(command: 'evalsha' | 'eval', args: (string | number)[]): Promise<unknown> {
    return this.inFlight > 1 && !this.corkTurn()
      ? sendPipelined(this.redis, command, args)
      : sendAlone(this.redis, command, args);
  }

  /**
   * Keeps the event loop turning (one setImmediate after another: libuv then polls without
   * blocking) while scripts are in flight, for up to QUOTA_WAIT_SPIN_MS from the first. An
   * idle loop sleeps in epoll_wait and the reply has to wake it: on this VM that wake-up is
   * most of the ~0.25 ms per script the gateway spent beyond a bare round trip at 200 req/s
   * (docs/BENCHMARKS.md "Where the added latency goes"). Under load the loop never sleeps
   * anyway; the cap bounds the CPU it can cost when Redis is slow.
   */
  private spin(): void {
    this.spinning = true;
    const until = performance.now() + this.spinMs;
    const turn = () => {
      if (this.inFlight === 0 || performance.now() >= until) this.spinning = false;
      else setImmediate(turn);
    };
    setImmediate(turn);
  }

  /** Corks the connection's socket until setImmediate (once per turn); false when it cannot (cluster, not connected). */
  private corkTurn(): boolean {
    if (this.corked) return true;
    if (this.redis.isCluster) return false;
    const redis = this.redis as Redis;
    const socket = redis.stream;
    if (redis.status !== 'ready' || !socket?.writable) return false;
    socket.cork();
    this.corked = true;
    setImmediate(() => {
      this.corked = false;
      socket.uncork();
    });
    return true;
  }

  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    const keys = [
      reservationsKey(req.tenantId),
      expiriesKey(req.tenantId),
      req.rpm?.key ?? expiriesKey(req.tenantId),
      tenantMarkerKey(req.tenantId),
    ];
    const args: (string | number)[] = [
      req.now,
      req.ttlMs,
      req.reservationId,
      req.tokens,
      req.costMicros,
      req.rpm?.limit ?? 0,
      req.rpm?.windowMs ?? 0,
      req.requireInitialized ? 1 : 0,
      req.completion?.wanted ?? 0,
      req.completion?.choices ?? 1,
      req.completion?.microsPerToken ?? 0,
      req.completion?.min ?? 0,
    ];
    for (const l of req.levels) {
      keys.push(l.tokensKey, l.spendKey);
      args.push(lim(l.tokenLimit), lim(l.spendLimitMicros), exp(l.expireAt));
    }
    const windows = req.tpm ?? [];
    for (const w of windows) {
      keys.push(...tpmKeys(w.key));
      args.push(w.limit, w.windowMs);
    }
    const r = (await this.run('gwQuotaReserve', keys, args)) as unknown[];
    const status = String(r[0]);
    const rpmCount = Number(r[3]);
    const rpm =
      req.rpm && rpmCount >= 0 ? { limit: req.rpm.limit, count: rpmCount, resetMs: Number(r[4]) } : null;
    const n = req.levels.length;
    if (status === 'ok')
      return {
        ok: true,
        usage: usageOf(r, 6, n),
        rpm,
        granted: Number(r[1]),
        tokens: Number(r[2]),
        costMicros: Number(r[5]),
        tpm: tpmOf(r, 6 + 2 * n, windows),
      };
    if (status === 'uninitialized') return { ok: false, reason: 'uninitialized' };
    if (status === 'rpm') return { ok: false, reason: 'rpm', rpm: rpm! };
    if (status === 'tpm')
      return {
        ok: false,
        reason: 'tpm',
        windowIndex: Number(r[1]),
        tpm: tpmOf(r, 6 + 2 * n, windows),
        retryMs: Number(r[5]) < 0 ? null : Number(r[5]),
        usage: usageOf(r, 6, n),
        rpm,
      };
    return {
      ok: false,
      reason: status as 'tokens' | 'budget',
      levelIndex: Number(r[1]),
      limit: Number(r[2]),
      usage: usageOf(r, 6, n),
      rpm,
    };
  }

  private onceKeys(ref: ReservationRef): string[] {
    const t = ref.tenantId;
    return [reservationsKey(t), expiriesKey(t), settledKey(t), ledgerStreamKey(t)];
  }

  async settle(
    ref: ReservationRef,
    tokens: number,
    costMicros: number,
    now: number,
    opts: SettleOptions = {},
  ): Promise<SettleResult> {
    const keys = this.onceKeys(ref);
    const args: (string | number)[] = [
      now,
      ref.reservationId,
      tokens,
      costMicros,
      opts.markerTtlMs ?? SETTLED_MARKER_MS,
      opts.row ?? '',
    ];
    for (const l of ref.levels) {
      keys.push(l.tokensKey, l.spendKey);
      args.push(exp(l.expireAt));
    }
    for (const w of ref.tpm ?? []) keys.push(...tpmKeys(w));
    const r = (await this.run('gwQuotaSettle', keys, args)) as unknown[];
    const status = Number(r[0]);
    return { late: status === 1, duplicate: status === 2, usage: usageOf(r, 1, ref.levels.length) };
  }

  async release(ref: ReservationRef, now: number, opts: SettleOptions = {}): Promise<ReleaseResult> {
    const keys = this.onceKeys(ref);
    const args: (string | number)[] = [
      now,
      ref.reservationId,
      opts.markerTtlMs ?? SETTLED_MARKER_MS,
      opts.row ?? '',
    ];
    for (const l of ref.levels) {
      keys.push(l.tokensKey, l.spendKey);
      args.push(exp(l.expireAt));
    }
    for (const w of ref.tpm ?? []) keys.push(...tpmKeys(w));
    const r = (await this.run('gwQuotaRelease', keys, args)) as unknown[];
    const status = Number(r[0]);
    return status === 1 ? 'released' : status === 2 ? 'duplicate' : 'expired';
  }

  async unmarkTenant(tenantId: string): Promise<void> {
    await sendPipelined(this.redis, 'del', [tenantMarkerKey(tenantId)]);
  }

  async tenantRebuiltAt(tenantId: string): Promise<number | null> {
    const v = (await sendPipelined(this.redis, 'get', [tenantMarkerKey(tenantId)])) as string | null;
    return v === null ? null : Number(v);
  }

  async read(tenantId: string, keys: string[], now: number): Promise<number[]> {
    const r = (await this.run(
      'gwQuotaRead',
      [reservationsKey(tenantId), expiriesKey(tenantId), ...keys],
      [now],
    )) as unknown[];
    return r.map(Number);
  }

  async pending(tenantId: string, now: number): Promise<number> {
    return Number(
      await this.run('gwQuotaPending', [reservationsKey(tenantId), expiriesKey(tenantId)], [now]),
    );
  }

  async rebuild(
    tenantId: string,
    entries: RebuildEntry[],
    now: number,
    opts: RebuildOptions = {},
  ): Promise<RebuildChange[]> {
    const keys = [reservationsKey(tenantId), expiriesKey(tenantId), tenantMarkerKey(tenantId)];
    const since = opts.onlyIfUninitialized ? 1 : Math.max(0, opts.unlessRebuiltSince ?? 0);
    let pairs = '';
    for (const e of entries) {
      keys.push(e.key);
      pairs += `${e.value} ${exp(e.expireAt)} `;
    }
    const args: (string | number)[] = [now, opts.markTenant ? 1 : 0, since, pairs];
    const r = (await this.run('gwQuotaRebuild', keys, args)) as unknown[];
    return entries.map((e, i) => ({ key: e.key, before: Number(r[2 * i]), after: Number(r[2 * i + 1]) }));
  }

  override waitReady(timeoutMs: number): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.redis.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.redis.once('ready', done);
    });
  }

  async isInitialized(): Promise<boolean> {
    return Number(await sendPipelined(this.redis, 'exists', [MARKER_KEY])) === 1;
  }

  async markInitialized(at: number): Promise<void> {
    await sendPipelined(this.redis, 'set', [MARKER_KEY, new Date(at).toISOString()]);
  }
}
