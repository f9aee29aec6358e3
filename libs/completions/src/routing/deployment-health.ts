import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';

/**
 * The health of one deployment, as every instance shares it (docs/models.md, "Cooldown").
 * Times are epoch milliseconds.
 */
export interface HealthRecord {
  /** Failures counted in the current window. */
  failures: number;
  windowStart: number;
  /** 0 = in rotation; else skipped until then, after which one request probes it. */
  until: number;
  /** Why it rests: too many failures, or the provider's Retry-After. */
  reason: '' | 'failures' | 'retry_after';
  /** A probe is on its way until then (one probe per cooldown, across instances). */
  probeUntil: number;
}

export interface HealthPolicy {
  /** Failures within `windowMs` that start a cooldown. */
  threshold: number;
  windowMs: number;
  cooldownMs: number;
}

/** healthy: in rotation; cooldown: skipped; probe: cooldown over, the next request may probe it. */
export type DeploymentState = 'healthy' | 'cooldown' | 'probe';

export function stateOf(r: HealthRecord | undefined, now: number): DeploymentState {
  if (!r || r.until === 0) return 'healthy';
  return now < r.until ? 'cooldown' : 'probe';
}

const EMPTY: HealthRecord = { failures: 0, windowStart: 0, until: 0, reason: '', probeUntil: 0 };

/**
 * A failure of the deployment, of an attempt that started at `startedAt`. Failures of attempts
 * that started before its rest ended are not counted (they report what started the rest, or
 * hung meanwhile: found by the reliability suite, where hung requests timing out after the
 * cooldown took the only deployment out again); a failed probe starts a new cooldown at once.
 */
export function afterFailure(
  prev: HealthRecord | undefined,
  now: number,
  p: HealthPolicy,
  startedAt = now,
): HealthRecord {
  const r = { ...(prev ?? EMPTY) };
  if (r.until > 0 && startedAt < r.until) return r;
  const probing = r.until > 0;
  if (now - r.windowStart >= p.windowMs) {
    r.failures = 0;
    r.windowStart = now;
  }
  r.failures += 1;
  if (probing || r.failures >= p.threshold) {
    r.until = now + p.cooldownMs;
    r.reason = 'failures';
    r.failures = 0;
    r.windowStart = now;
    r.probeUntil = 0;
  }
  return r;
}

/** The provider asked to wait `ms` (429 with Retry-After): skipped until then at least. */
export function afterRetryAfter(prev: HealthRecord | undefined, now: number, ms: number): HealthRecord {
  const r = { ...(prev ?? EMPTY) };
  if (now + ms > r.until) {
    r.until = now + ms;
    r.reason = 'retry_after';
  }
  r.probeUntil = 0;
  return r;
}

/** The probe lease, or null when it is not this request's to take (resting, or another probes). */
export function withProbe(prev: HealthRecord | undefined, now: number, leaseMs: number): HealthRecord | null {
  if (!prev || prev.until === 0 || now < prev.until || prev.probeUntil > now) return null;
  return { ...prev, probeUntil: now + leaseMs };
}

export function encodeHealth(r: HealthRecord): string {
  return `${r.failures}:${r.windowStart}:${r.until}:${r.reason}:${r.probeUntil}`;
}

export function decodeHealth(s: string): HealthRecord | undefined {
  const m = /^(\d+):(\d+):(\d+):([a-z_]*):(\d+)$/.exec(s);
  if (!m) return undefined;
  return {
    failures: Number(m[1]),
    windowStart: Number(m[2]),
    until: Number(m[3]),
    reason: m[4] as HealthRecord['reason'],
    probeUntil: Number(m[5]),
  };
}

/**
 * Where deployment health lives: in the process (one instance), or in Redis so every instance
 * agrees. Each method returns the record as it now stands (undefined = healthy) so the caller's
 * snapshot follows at once; `probe` returns null when the lease was not granted.
 */
export abstract class HealthStore {
  abstract failure(id: string, now: number, policy: HealthPolicy, startedAt?: number): Promise<HealthRecord>;
  abstract retryAfter(id: string, now: number, ms: number): Promise<HealthRecord>;
  abstract success(id: string): Promise<void>;
  abstract probe(id: string, now: number, leaseMs: number): Promise<HealthRecord | null>;
  /** Every record (what other instances wrote, with Redis). */
  abstract all(): Promise<Map<string, HealthRecord>>;
}

export class MemoryHealthStore extends HealthStore {
  private readonly records = new Map<string, HealthRecord>();

  failure(id: string, now: number, policy: HealthPolicy, startedAt = now): Promise<HealthRecord> {
    return this.put(id, afterFailure(this.records.get(id), now, policy, startedAt));
  }
  retryAfter(id: string, now: number, ms: number): Promise<HealthRecord> {
    return this.put(id, afterRetryAfter(this.records.get(id), now, ms));
  }
  success(id: string): Promise<void> {
    this.records.delete(id);
    return Promise.resolve();
  }
  probe(id: string, now: number, leaseMs: number): Promise<HealthRecord | null> {
    const r = withProbe(this.records.get(id), now, leaseMs);
    return r ? this.put(id, r) : Promise.resolve(null);
  }
  all(): Promise<Map<string, HealthRecord>> {
    return Promise.resolve(new Map(this.records));
  }
  private put(id: string, r: HealthRecord): Promise<HealthRecord> {
    this.records.set(id, r);
    return Promise.resolve(r);
  }
}

/**
 * The same transitions as afterFailure / afterRetryAfter / withProbe, in one script on one
 * hash (one key: one Redis Cluster slot), so concurrent instances never lose an update.
 * ARGV: id, op (fail | wait | probe), now, then the op's numbers (fail: threshold, window,
 * cooldown, the attempt's start). Returns the new record, or
 * '' for a probe not granted.
 */
const HEALTH_SCRIPT = `
local id, op, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local f, w, u, r, p = 0, 0, 0, '', 0
local raw = redis.call('HGET', KEYS[1], id)
if raw then
  local a, b, c, d, e = string.match(raw, '^(%d+):(%d+):(%d+):([%a_]*):(%d+)$')
  if a then f, w, u, r, p = tonumber(a), tonumber(b), tonumber(c), d, tonumber(e) end
end
if op == 'fail' then
  local threshold, windowMs, cooldownMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local started = tonumber(ARGV[7] or ARGV[3])
  if not (u > 0 and started < u) then
    local probing = u > 0
    if now - w >= windowMs then f = 0; w = now end
    f = f + 1
    if probing or f >= threshold then u = now + cooldownMs; r = 'failures'; f = 0; w = now; p = 0 end
  end
elseif op == 'wait' then
  if now + tonumber(ARGV[4]) > u then u = now + tonumber(ARGV[4]); r = 'retry_after' end
  p = 0
elseif op == 'probe' then
  if u == 0 or now < u or p > now then return '' end
  p = now + tonumber(ARGV[4])
end
local out = string.format('%d:%d:%d:%s:%d', f, w, u, r, p)
redis.call('HSET', KEYS[1], id, out)
return out
`;

type RedisClient = Redis | Cluster;
type WithHealthScript = RedisClient & {
  routingHealth(key: string, ...args: (string | number)[]): Promise<string>;
};

/** Deployment health in one Redis hash shared by every instance (single-key commands only). */
export class RedisHealthStore extends HealthStore {
  private readonly redis: WithHealthScript;

  constructor(
    redis: RedisClient,
    private readonly key = 'routing:deployments',
  ) {
    super();
    if (!(redis as unknown as Partial<WithHealthScript>).routingHealth)
      redis.defineCommand('routingHealth', { numberOfKeys: 1, lua: HEALTH_SCRIPT });
    this.redis = redis as WithHealthScript;
  }

  async failure(id: string, now: number, p: HealthPolicy, startedAt = now): Promise<HealthRecord> {
    const out = await this.redis.routingHealth(
      this.key,
      id,
      'fail',
      now,
      p.threshold,
      p.windowMs,
      p.cooldownMs,
      startedAt,
    );
    return decodeHealth(out)!;
  }
  async retryAfter(id: string, now: number, ms: number): Promise<HealthRecord> {
    return decodeHealth(await this.redis.routingHealth(this.key, id, 'wait', now, ms))!;
  }
  async success(id: string): Promise<void> {
    await this.redis.hdel(this.key, id);
  }
  async probe(id: string, now: number, leaseMs: number): Promise<HealthRecord | null> {
    const out = await this.redis.routingHealth(this.key, id, 'probe', now, leaseMs);
    return out ? decodeHealth(out)! : null;
  }
  async all(): Promise<Map<string, HealthRecord>> {
    const raw = await this.redis.hgetall(this.key);
    const out = new Map<string, HealthRecord>();
    for (const [id, v] of Object.entries(raw)) {
      const r = decodeHealth(v);
      if (r) out.set(id, r);
    }
    return out;
  }
}
