import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** How ApiKeyGuard resolved (or refused) a key; one counter label per path. */
export const AUTH_PATHS = [
  'format_reject',
  'lru_hit',
  'redis_hit',
  'db_hit',
  'coalesced',
  'legacy_fallback',
  'legacy_upgraded',
  'negative_hit',
  'rejected',
] as const;
export type AuthPath = (typeof AUTH_PATHS)[number];

/** Why a key authentication was refused before any work. */
export type AuthThrottleReason = 'address_prefix' | 'global' | 'legacy_prefix';
/** How a login attempt ended. */
export type LoginOutcome = 'success' | 'failure' | 'throttled' | 'busy';

/** The level whose limit refused a request. */
export type QuotaLevel = 'tenant' | 'user' | 'key';
/** What ran out: tokens, budget (USD), requests per minute, or a model not allowed; free text allowed. */
export type QuotaRefusalType = 'tokens' | 'budget' | 'rate' | 'model' | (string & {});
/** How an upstream call ended: `ok`, or why not (anything but `ok` also counts as an error). */
export type UpstreamOutcome =
  'ok' | 'error' | 'timeout' | 'http_4xx' | 'http_5xx' | 'aborted' | (string & {});

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const UPSTREAM_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

/**
 * Every Prometheus metric of the gateway, on its own Registry (two apps in one process,
 * as in the tests, do not collide). Other libs inject this and call the typed methods;
 * metric names and meanings are listed in the README, "Operating it".
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  private readonly httpRequests = new Counter({
    name: 'gateway_http_requests_total',
    help: 'HTTP requests by route pattern, method and status (499 = client went away before the end)',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  private readonly httpDuration = new Histogram({
    name: 'gateway_http_request_duration_seconds',
    help: 'HTTP request latency until the response ended (for streams: the whole stream)',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly httpInFlight = new Gauge({
    name: 'gateway_http_in_flight_requests',
    help: 'HTTP requests (including open streams) not yet finished',
    registers: [this.registry],
  });
  private readonly authPaths = new Counter({
    name: 'gateway_auth_path_total',
    help: 'Virtual key authentications by resolution path',
    labelNames: ['path'] as const,
    registers: [this.registry],
  });
  private readonly authThrottled = new Counter({
    name: 'gateway_auth_throttled_total',
    help: 'Key authentications refused before any work by a limiter, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  private readonly logins = new Counter({
    name: 'gateway_login_attempts_total',
    help: 'POST /auth/login by outcome (success, failure, throttled, busy)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  private readonly bcryptRuns = new Counter({
    name: 'gateway_bcrypt_compares_total',
    help: 'bcrypt compares for unauthenticated callers by caller (login, legacy_key) and outcome (run, refused)',
    labelNames: ['caller', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly quotaRefusals = new Counter({
    name: 'gateway_quota_refusals_total',
    help: 'Requests refused by a quota, by level (tenant, user, key) and type (tokens, budget, rate, model)',
    labelNames: ['level', 'type'] as const,
    registers: [this.registry],
  });
  private readonly upstreamDuration = new Histogram({
    name: 'gateway_upstream_duration_seconds',
    help: 'Upstream provider call latency (whole call, streams included) by provider, model and outcome',
    labelNames: ['provider', 'model', 'outcome'] as const,
    buckets: UPSTREAM_BUCKETS,
    registers: [this.registry],
  });
  private readonly upstreamErrors = new Counter({
    name: 'gateway_upstream_errors_total',
    help: 'Upstream provider calls that did not end ok, by provider, model and outcome',
    labelNames: ['provider', 'model', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly tokenCounter = new Counter({
    name: 'gateway_tokens_total',
    help: 'Tokens billed, by model and kind (prompt, completion)',
    labelNames: ['model', 'kind'] as const,
    registers: [this.registry],
  });
  private readonly spend = new Counter({
    name: 'gateway_spend_usd_total',
    help: 'Spend in USD billed, by model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  private ledgerDepthFn?: () => number;
  private readonly ledgerDepth = new Gauge({
    name: 'gateway_ledger_queue_depth',
    help: 'Usage records waiting to be written to usage_records',
    registers: [this.registry],
    collect: () => {
      if (this.ledgerDepthFn) this.ledgerDepth.set(this.ledgerDepthFn());
    },
  });
  private readonly ledgerFlushFailures = new Counter({
    name: 'gateway_ledger_flush_failures_total',
    help: 'Ledger batch writes to PostgreSQL that failed (the batch is retried)',
    registers: [this.registry],
  });
  private deploymentsFn?: () => { deployment: string; state: number; inFlight: number }[];
  private readonly deploymentState = new Gauge({
    name: 'gateway_deployment_state',
    help: 'Routing state of a deployment: 0 in rotation, 1 cooldown over (awaiting its probe), 2 cooling down',
    labelNames: ['deployment'] as const,
    registers: [this.registry],
    collect: () => this.collectDeployments(),
  });
  private readonly deploymentInFlight = new Gauge({
    name: 'gateway_deployment_in_flight',
    help: 'Upstream exchanges in progress on this instance, by deployment (what least-busy compares)',
    labelNames: ['deployment'] as const,
    registers: [this.registry],
    collect: () => this.collectDeployments(),
  });
  private readonly deploymentAttempts = new Counter({
    name: 'gateway_deployment_attempts_total',
    help: 'Upstream attempts by deployment and outcome (ok, rate_limited, transient, unavailable, conflict, error, timeout)',
    labelNames: ['deployment', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly capViolations = new Counter({
    name: 'gateway_cap_violations_total',
    help: 'Answers past the completion cap the gateway sent (a stream is cut there; an unstreamed answer is charged in full)',
    labelNames: ['deployment'] as const,
    registers: [this.registry],
  });
  private readonly cacheSizeFns = new Map<string, () => number>();
  private readonly cacheSizes = new Gauge({
    name: 'gateway_cache_entries',
    help: 'Entries in an in-process cache, by cache name',
    labelNames: ['cache'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [name, fn] of this.cacheSizeFns) this.cacheSizes.set({ cache: name }, fn());
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'gateway_' });
    // Zero series up front so dashboards and rate() see every path from the start.
    for (const path of AUTH_PATHS) this.authPaths.inc({ path }, 0);
    for (const outcome of ['success', 'failure', 'throttled', 'busy'] as const)
      this.logins.inc({ outcome }, 0);
    this.ledgerFlushFailures.inc(0);
  }

  /** One finished HTTP request; `route` is the route pattern (`/v1/keys/:id`), never the raw URL. */
  httpRequest(route: string, method: string, status: number | string, seconds: number): void {
    const labels = { route, method, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  /** +1 when a request starts, -1 when it ends (HttpMetricsMiddleware). */
  inFlight(delta: 1 | -1): void {
    this.httpInFlight.inc(delta);
  }

  /** `metrics.authPath('lru_hit')`: how a virtual key was resolved or refused. */
  authPath(path: AuthPath): void {
    this.authPaths.inc({ path });
  }

  /** A key authentication refused by a limiter before any work (`address_prefix`, `global`, `legacy_prefix`). */
  authThrottle(reason: AuthThrottleReason): void {
    this.authThrottled.inc({ reason });
  }

  /** One POST /auth/login and how it ended. */
  login(outcome: LoginOutcome): void {
    this.logins.inc({ outcome });
  }

  /** A bcrypt compare for an unauthenticated caller: run, or refused (the gate was full). */
  bcrypt(caller: string, outcome: 'run' | 'refused'): void {
    this.bcryptRuns.inc({ caller, outcome });
  }

  /** `metrics.quotaRefusal('key', 'budget')`: a request refused by a limit. */
  quotaRefusal(level: QuotaLevel, type: QuotaRefusalType): void {
    this.quotaRefusals.inc({ level, type });
  }

  /** One upstream call: its duration in seconds and how it ended (not `ok` = also an error). */
  upstream(provider: string, model: string, seconds: number, outcome: UpstreamOutcome = 'ok'): void {
    this.upstreamDuration.observe({ provider, model, outcome }, seconds);
    if (outcome !== 'ok') this.upstreamErrors.inc({ provider, model, outcome });
  }

  /** An upstream wrote past the cap it was sent (`<model>#<index>` of the routing table). */
  capViolation(deployment: string): void {
    this.capViolations.inc({ deployment });
  }

  /** Tokens and spend billed for one request. */
  tokens(model: string, prompt: number, completion: number, usd: number): void {
    if (prompt > 0) this.tokenCounter.inc({ model, kind: 'prompt' }, prompt);
    if (completion > 0) this.tokenCounter.inc({ model, kind: 'completion' }, completion);
    if (usd > 0) this.spend.inc({ model }, usd);
  }

  /** Current ledger queue depth (or register `trackLedgerDepth` once and let scrapes read it). */
  ledger(depth: number): void {
    this.ledgerDepth.set(depth);
  }

  /** Read the ledger queue depth at every scrape. */
  trackLedgerDepth(fn: () => number): void {
    this.ledgerDepthFn = fn;
  }

  ledgerFlushFailure(): void {
    this.ledgerFlushFailures.inc();
  }

  /** Read every deployment's routing state and in-flight count at every scrape. */
  trackDeployments(fn: () => { deployment: string; state: number; inFlight: number }[]): void {
    this.deploymentsFn = fn;
  }

  /** One attempt on a deployment (retries and fallovers each count). */
  deploymentAttempt(deployment: string, outcome: string): void {
    this.deploymentAttempts.inc({ deployment, outcome });
  }

  private collectDeployments(): void {
    for (const d of this.deploymentsFn?.() ?? []) {
      this.deploymentState.set({ deployment: d.deployment }, d.state);
      this.deploymentInFlight.set({ deployment: d.deployment }, d.inFlight);
    }
  }

  /** Current size of an in-process cache (or `trackCacheSize` to read it at every scrape). */
  cacheSize(name: string, n: number): void {
    this.cacheSizes.set({ cache: name }, n);
  }

  /** Read a cache's size at every scrape (e.g. `() => lru.size`). */
  trackCacheSize(name: string, fn: () => number): void {
    this.cacheSizeFns.set(name, fn);
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
