import { Injectable, Logger, OnApplicationShutdown, OnModuleInit, Optional } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { RedisConnection } from '@app/database';
import { ApiError, MetricsService, ReadinessRegistry } from '@app/observability';
import type { AttemptTimeouts, UpstreamError } from '../providers/provider';
import {
  afterFailure,
  afterRetryAfter,
  DeploymentState,
  HealthPolicy,
  HealthRecord,
  HealthStore,
  MemoryHealthStore,
  RedisHealthStore,
  stateOf,
  withProbe,
} from './deployment-health';
import { Deployment, ModelRoute, RoutingTable } from './routing-table';

/** The deployments one request may try, best first, and the ones resting meanwhile. */
export interface RoutePlan {
  candidates: Deployment[];
  /** Resting deployments: how long until each may be probed, and why it rests. */
  resting: { deployment: Deployment; waitMs: number; reason: HealthRecord['reason'] }[];
}

const STATE_VALUE: Record<DeploymentState, number> = { healthy: 0, probe: 1, cooldown: 2 };

/**
 * Chooses the deployments of a request and keeps their health (README "Models and providers"):
 * load balancing among the healthy ones (order, weighted, least-busy), cooldown after
 * ROUTING_FAILURE_THRESHOLD failures within the window or a provider's Retry-After, then one
 * probe. Health is shared through Redis when REDIS_URL is set: every transition is one script
 * on one hash, and each instance re-reads the hash every ROUTING_SYNC_MS; the request path
 * reads only the local copy. In-flight counts (least-busy) are per instance.
 */
@Injectable()
export class DeploymentRouter implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Routing');
  private readonly store: HealthStore;
  private readonly shared: boolean;
  private health = new Map<string, HealthRecord>();
  private readonly inFlight = new Map<string, number>();
  private readonly policy: HealthPolicy;
  private sync?: NodeJS.Timeout;
  private syncFailing = false;
  private readonly byId = new Map<string, Deployment>();

  constructor(
    private readonly routes: RoutingTable,
    private readonly config: AppConfig,
    @Optional() redis?: RedisConnection,
    @Optional() private readonly metrics?: MetricsService,
    @Optional() private readonly readiness?: ReadinessRegistry,
  ) {
    const client = redis?.client;
    this.shared = !!client;
    this.store = client ? new RedisHealthStore(client) : new MemoryHealthStore();
    this.policy = {
      threshold: config.ROUTING_FAILURE_THRESHOLD,
      windowMs: config.ROUTING_FAILURE_WINDOW_MS,
      cooldownMs: config.ROUTING_COOLDOWN_MS,
    };
    for (const r of routes.routes) for (const d of r.deployments) this.byId.set(d.id, d);
  }

  onModuleInit(): void {
    this.metrics?.trackDeployments(() =>
      [...this.byId.keys()].map((id) => ({
        deployment: id,
        state: STATE_VALUE[stateOf(this.health.get(id), Date.now())],
        inFlight: this.inFlight.get(id) ?? 0,
      })),
    );
    this.readiness?.register({ name: 'deployments', check: () => Promise.resolve(this.readinessDetails()) });
    if (this.shared) {
      void this.refresh();
      this.sync = setInterval(() => void this.refresh(), this.config.ROUTING_SYNC_MS);
      this.sync.unref();
    }
  }

  onApplicationShutdown(): void {
    if (this.sync) clearInterval(this.sync);
  }

  /** The state of a deployment as this instance sees it. */
  state(id: string, now = Date.now()): DeploymentState {
    return stateOf(this.health.get(id), now);
  }

  /**
   * The deployments to try, in order: a deployment due for its probe first (when this request
   * got the lease), then the healthy ones as the model's strategy orders them. Resting ones
   * are left out. Throws 429 (a provider asked to wait) or 503 when none may be tried.
   * `deployments`: the route's ones that may serve this request (an endpoint's, or the one a
   * stored response lives at); default all.
   */
  async plan(route: ModelRoute, deployments: Deployment[] = route.deployments): Promise<RoutePlan> {
    const now = Date.now();
    const healthy: Deployment[] = [];
    const probes: Deployment[] = [];
    const resting: RoutePlan['resting'] = [];
    for (const d of deployments) {
      const r = this.health.get(d.id);
      const state = stateOf(r, now);
      if (state === 'healthy') healthy.push(d);
      else if (state === 'probe' && (r?.probeUntil ?? 0) <= now && (await this.takeProbe(d, now)))
        probes.push(d);
      // the probe was not granted because another instance's probe already answered: healthy
      else if (state === 'probe' && this.state(d.id, now) === 'healthy') healthy.push(d);
      else
        resting.push({
          deployment: d,
          waitMs: Math.max(0, (r?.until ?? now) - now),
          reason: r?.reason ?? '',
        });
    }
    const candidates = [...probes, ...this.order(route, healthy)];
    if (candidates.length === 0) throw this.noneAvailable(route, resting);
    return { candidates, resting };
  }

  /** The attempt's timeouts: the deployment's overrides, else the settings. */
  timeouts(d: Deployment): AttemptTimeouts {
    const t = d.routing.timeouts;
    return {
      connectMs: t.connectMs ?? this.config.UPSTREAM_CONNECT_TIMEOUT_MS,
      firstByteMs: t.firstByteMs ?? this.config.UPSTREAM_FIRST_BYTE_TIMEOUT_MS,
      idleMs: t.idleMs ?? this.config.UPSTREAM_STREAM_IDLE_TIMEOUT_MS,
    };
  }

  /**
   * +1 in flight on `d` until the returned function is called (idempotent), which also
   * records the call in gateway_upstream_duration_seconds with its outcome.
   */
  begin(d: Deployment): (outcome: string) => void {
    this.inFlight.set(d.id, (this.inFlight.get(d.id) ?? 0) + 1);
    const started = performance.now();
    let done = false;
    return (outcome) => {
      if (done) return;
      done = true;
      this.inFlight.set(d.id, (this.inFlight.get(d.id) ?? 1) - 1);
      this.metrics?.upstream(d.provider, d.model, (performance.now() - started) / 1000, outcome);
    };
  }

  /**
   * The deployment has max_connections exchanges in flight on this instance: a new one would
   * wait in the connection pool's queue (invisible to the client). Counted in
   * gateway_deployment_attempts_total{outcome="saturated"} when it is skipped.
   */
  saturated(d: Deployment): boolean {
    if ((this.inFlight.get(d.id) ?? 0) < d.maxConnections) return false;
    this.metrics?.deploymentAttempt(d.id, 'saturated');
    return true;
  }

  /** The deployment answered: back in rotation if it was not. */
  async succeeded(d: Deployment): Promise<void> {
    this.metrics?.deploymentAttempt(d.id, 'ok');
    const r = this.health.get(d.id);
    if (!r) return;
    const wasResting = r.until > 0;
    this.health.delete(d.id);
    await this.guard(() => this.store.success(d.id));
    if (wasResting) this.logger.log(`${d.id}: answered its probe, back in rotation`);
  }

  /** A transient failure about to be retried on the same deployment: counted in metrics only. */
  retrying(d: Deployment, e: UpstreamError): void {
    this.metrics?.deploymentAttempt(d.id, e.kind);
  }

  /**
   * An attempt (started at `startedAt`, epoch ms) failed before the answer started: count it,
   * or rest for the provider's Retry-After.
   */
  async failed(d: Deployment, e: UpstreamError, startedAt = Date.now()): Promise<void> {
    this.metrics?.deploymentAttempt(d.id, e.kind === 'final' ? 'error' : e.kind);
    if (e.kind === 'conflict' || e.kind === 'final') return;
    const now = Date.now();
    const before = this.health.get(d.id);
    const wait =
      e.kind === 'rate_limited' && e.retryAfterMs !== undefined
        ? Math.min(e.retryAfterMs, this.config.ROUTING_MAX_RETRY_AFTER_MS)
        : undefined;
    const r = await this.guard(() =>
      wait !== undefined
        ? this.store.retryAfter(d.id, now, wait)
        : this.store.failure(d.id, now, this.policy, startedAt),
    );
    const next = r ?? this.local(d.id, now, wait, startedAt);
    this.health.set(d.id, next);
    if (next.until > now && (before?.until ?? 0) !== next.until)
      this.logger.warn(
        `${d.id}: out of rotation for ${next.until - now} ms (${
          next.reason === 'retry_after'
            ? 'the provider asked to wait'
            : `${this.policy.threshold} failures or a failed probe`
        }: ${e.message})`,
      );
  }

  /** /health/ready details: degraded while a deployment rests, unavailable for a model with none left. */
  readinessDetails(now = Date.now()): Record<string, unknown> {
    const models: Record<string, { inRotation: number; total: number; resting: string[] }> = {};
    let degraded = false;
    let unavailable = false;
    for (const route of this.routes.routes) {
      const resting = route.deployments.filter((d) => this.state(d.id, now) !== 'healthy').map((d) => d.id);
      if (resting.length === 0) continue;
      degraded = true;
      if (resting.length === route.deployments.length) unavailable = true;
      models[route.name] = {
        inRotation: route.deployments.length - resting.length,
        total: route.deployments.length,
        resting,
      };
    }
    return {
      state: unavailable ? 'unavailable' : degraded ? 'degraded' : 'healthy',
      shared: this.shared,
      ...(degraded ? { models } : {}),
    };
  }

  /** Re-reads the shared records (Redis). */
  async refresh(): Promise<void> {
    try {
      const all = await this.store.all();
      const next = new Map<string, HealthRecord>();
      for (const [id, r] of all) if (this.byId.has(id)) next.set(id, r);
      this.health = next;
      if (this.syncFailing) this.logger.log('deployment health: Redis answers again');
      this.syncFailing = false;
    } catch (e) {
      if (!this.syncFailing)
        this.logger.warn(`deployment health: cannot read Redis (${(e as Error).message}); using local state`);
      this.syncFailing = true;
    }
  }

  private order(route: ModelRoute, healthy: Deployment[]): Deployment[] {
    if (healthy.length < 2 || route.strategy === 'order') return healthy;
    if (route.strategy === 'weighted') {
      // Weighted sampling without replacement (Efraimidis-Spirakis): the first is drawn by
      // weight, and so are the fallbacks; weight 0 comes last.
      return healthy
        .map((d) => ({ d, k: d.routing.weight > 0 ? Math.random() ** (1 / d.routing.weight) : -1 }))
        .sort((a, b) => b.k - a.k)
        .map((x) => x.d);
    }
    // least-busy: fewest exchanges in flight on this instance; ties drawn at random.
    return healthy
      .map((d) => ({ d, n: this.inFlight.get(d.id) ?? 0, k: Math.random() }))
      .sort((a, b) => a.n - b.n || a.k - b.k)
      .map((x) => x.d);
  }

  private async takeProbe(d: Deployment, now: number): Promise<boolean> {
    // One probe per cooldown period: a probe that takes longer (or whose client left) lets
    // another request probe after that long, never keeping the deployment out for good.
    const lease = this.config.ROUTING_COOLDOWN_MS;
    const r = await this.guard(() => this.store.probe(d.id, now, lease));
    if (r === undefined) {
      // Store unreachable: probe from this instance's own view.
      const own = withProbe(this.health.get(d.id), now, lease);
      if (own) this.health.set(d.id, own);
      return own !== null;
    }
    if (r === null) {
      await this.refreshOne();
      return false;
    }
    this.health.set(d.id, r);
    this.logger.log(`${d.id}: cooldown over, probing it with one request`);
    return true;
  }

  /** Another instance holds the probe: see its lease (and everything else) now. */
  private async refreshOne(): Promise<void> {
    if (this.shared) await this.refresh();
  }

  private noneAvailable(route: ModelRoute, resting: RoutePlan['resting']): ApiError {
    const wait = Math.max(1, Math.ceil(Math.min(...resting.map((r) => r.waitMs)) / 1000));
    const headers = { 'retry-after': String(wait) };
    if (resting.some((r) => r.reason === 'retry_after'))
      return new ApiError(
        429,
        `Every deployment of the model "${route.name}" is rate-limited by its provider; retry after ${wait} s`,
        'rate_limit_exceeded',
        'upstream_rate_limited',
        headers,
      );
    return new ApiError(
      503,
      `Every deployment of the model "${route.name}" is failing and cooling down; retry after ${wait} s`,
      'server_error',
      'upstream_unavailable',
      headers,
    );
  }

  /** This instance's own transition when the shared store cannot be reached. */
  private local(id: string, now: number, wait: number | undefined, startedAt: number): HealthRecord {
    const prev = this.health.get(id);
    return wait !== undefined
      ? afterRetryAfter(prev, now, wait)
      : afterFailure(prev, now, this.policy, startedAt);
  }

  /** Health is advice: a store failure never fails the request (undefined = it failed). */
  private async guard<T>(fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.logger.warn(`deployment health: store failed (${(e as Error).message})`);
      return undefined;
    }
  }
}
