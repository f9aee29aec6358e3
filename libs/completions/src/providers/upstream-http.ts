import { createParser, EventSourceMessage } from 'eventsource-parser';
import { Dispatcher, Pool } from 'undici';
import { ApiError } from '@app/observability';
import type { Deployment } from '../routing/routing-table';
import { AttemptTimeouts, FailureKind, UpstreamError } from './provider';

export type UpstreamResponse = Dispatcher.ResponseData;

/** The fields of an upstream error body the client sees. */
export interface ParsedUpstreamError {
  message?: string;
  type?: string;
  code?: string | null;
  param?: string | null;
}

/** Transport failures worth a retry of the same deployment (a kept-alive socket the upstream closed). */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
/** The deployment cannot be reached: the next one serves. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Pooled keep-alive HTTP to the upstreams: one undici Pool per origin (connect timeout and
 * size), bounded by the deployment's max_connections; the exchange never queues in it (a
 * deployment with max_connections exchanges in flight is skipped: DeploymentRouter.saturated). Maps every transport failure to an UpstreamError.
 * Timeouts per request: a stream's headers must come within its first-byte timeout; a
 * non-streamed answer is bounded only by the caller's signal (the total timeout), since its
 * first byte comes when the model has finished.
 */
export class UpstreamHttp {
  private readonly pools = new Map<string, Pool>();
  private readonly targets = new Map<string, { origin: string; path: string }>();

  post(
    d: Deployment,
    path: string,
    headers: Record<string, string>,
    body: string,
    signal: AbortSignal,
    opts: { stream: boolean; timeouts: AttemptTimeouts },
  ): Promise<UpstreamResponse> {
    return this.request(d, 'POST', path, headers, body, signal, opts);
  }

  /** `path` is appended to the deployment's base URL; `query` (without `?`) is passed as is. */
  async request(
    d: Deployment,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal,
    opts: { stream: boolean; timeouts: AttemptTimeouts },
    query = '',
  ): Promise<UpstreamResponse> {
    const target = this.target(d.baseUrl + path);
    try {
      return await this.pool(target.origin, d.maxConnections, opts.timeouts.connectMs).request({
        method,
        path: query ? `${target.path}?${query}` : target.path,
        headers,
        body,
        signal,
        headersTimeout: opts.stream ? opts.timeouts.firstByteMs : 0,
        // Silence inside a body: streams have their own watchdog (sseEvents), answers the total.
        bodyTimeout: 0,
      });
    } catch (e) {
      throw transportError(e, signal, d);
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }

  private target(url: string): { origin: string; path: string } {
    let t = this.targets.get(url);
    if (!t) {
      const u = new URL(url);
      t = { origin: u.origin, path: u.pathname };
      this.targets.set(url, t);
    }
    return t;
  }

  private pool(origin: string, connections: number, connectMs: number): Pool {
    const key = `${origin} ${connectMs} ${connections}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(origin, {
        connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: connectMs,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }
}

/** An abort is the caller's (its reason is rethrown as is); anything else becomes an UpstreamError. */
export function transportError(e: unknown, signal: AbortSignal, d: Deployment): unknown {
  if (signal.aborted) return signal.reason;
  if (e instanceof UpstreamError) return e;
  const code = (e as { code?: string })?.code ?? '';
  const label = `${d.provider} upstream of ${d.id}`;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return UpstreamError.timeout(`The ${label} did not accept a connection in time`, 'unavailable');
    case 'UND_ERR_HEADERS_TIMEOUT':
      return UpstreamError.timeout(`The ${label} did not start its stream in time`, 'unavailable');
    case 'UND_ERR_BODY_TIMEOUT':
      return UpstreamError.timeout(`The ${label} stopped sending`);
  }
  const reason = code.replace(/^UND_ERR_/, '');
  if (TRANSIENT_CODES.has(code))
    return UpstreamError.badGateway(`The ${label} dropped the connection (${reason})`, 'transient');
  if (UNREACHABLE_CODES.has(code))
    return UpstreamError.badGateway(`The ${label} is unreachable (${reason})`, 'unavailable');
  return UpstreamError.badGateway(`The ${label} failed (${code || (e as Error)?.name || 'error'})`, false);
}

/** Stream timing: until the first body chunk (from the request), then between chunks. */
export interface StreamTiming {
  startedAt: number;
  firstByteMs: number;
  idleMs: number;
  label: string;
}

/**
 * Cuts a stream body that stays silent too long: one timer, re-armed lazily (not one per
 * chunk), destroys the body with an UpstreamError the reader then throws.
 */
class StreamWatchdog {
  private last = 0;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly body: { destroy(e?: Error): void },
    private readonly t: StreamTiming,
  ) {
    this.timer = setTimeout(this.fire, Math.max(0, t.startedAt + t.firstByteMs - Date.now()));
  }

  touch(): void {
    this.last = Date.now();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private readonly fire = (): void => {
    const first = this.last === 0;
    const due = first ? this.t.startedAt + this.t.firstByteMs : this.last + this.t.idleMs;
    const left = due - Date.now();
    if (left > 0) {
      this.timer = setTimeout(this.fire, left);
      return;
    }
    this.body.destroy(
      first
        ? UpstreamError.timeout(
            `The ${this.t.label} sent nothing within ${this.t.firstByteMs} ms`,
            'unavailable',
          )
        : UpstreamError.timeout(`The ${this.t.label} was silent for more than ${this.t.idleMs} ms`),
    );
  };
}

/** Reads at most `limit` bytes of a body as text (error bodies, non-streamed answers). */
export async function readText(
  body: AsyncIterable<Buffer> & { destroy(): void },
  limit: number,
): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    parts.push(chunk);
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw UpstreamError.badGateway(`The upstream answer is larger than ${limit} bytes`, false);
    }
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * How long a 429 asked to wait: `retry-after-ms` (Azure, OpenAI), else `Retry-After` in
 * seconds or as an HTTP date. Undefined when absent or unreadable.
 */
export function retryAfterMs(
  headers: Record<string, string | string[] | undefined>,
  now = Date.now(),
): number | undefined {
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)?.trim();
  const ms = one(headers['retry-after-ms']);
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const ra = one(headers['retry-after']);
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Math.ceil(Number(ra) * 1000);
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * A non-2xx upstream answer as the client should see it, and what it allows (FailureKind):
 * 4xx passed on (the upstream's message, type and code; final), 429 kept with its Retry-After
 * (rate_limited), 408 -> 504 and other 5xx -> 502 (the next deployment may serve; 502/503 may
 * be retried), 409 passed on (conflict). 401/403 are about the gateway's own credential and
 * may echo part of it: a 502 without the message.
 */
export async function statusError(
  res: UpstreamResponse,
  d: Deployment,
  parse: (json: unknown) => ParsedUpstreamError | undefined,
): Promise<UpstreamError> {
  const status = res.statusCode;
  let parsed: ParsedUpstreamError | undefined;
  try {
    const text = await readText(res.body, 64 * 1024);
    parsed = parse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  const label = `${d.provider} upstream of ${d.id}`;
  if (status === 401 || status === 403) {
    return UpstreamError.badGateway(
      `The ${label} refused the gateway's credentials (${status})`,
      'unavailable',
      'upstream_auth_failed',
    );
  }
  if (status === 408)
    return UpstreamError.timeout(`The ${label} answered 408 (request timeout)`, 'unavailable');
  if (status >= 500 || status < 400) {
    const detail = parsed?.message ? `: ${parsed.message.slice(0, 300)}` : '';
    const kind: FailureKind =
      status === 502 || status === 503 ? 'transient' : status >= 500 ? 'unavailable' : 'final';
    return UpstreamError.badGateway(`The ${label} answered ${status}${detail}`, kind);
  }
  const message = parsed?.message ?? `The ${label} answered ${status}`;
  if (status === 429) {
    const wait = retryAfterMs(res.headers);
    const headers: Record<string, string> =
      wait === undefined ? {} : { 'retry-after': String(Math.max(1, Math.ceil(wait / 1000))) };
    return new UpstreamError(
      new ApiError(
        429,
        message,
        parsed?.type ?? 'rate_limit_exceeded',
        parsed?.code ?? 'upstream_rate_limited',
        headers,
      ),
      'rate_limited',
      wait,
    );
  }
  const type = parsed?.type ?? 'invalid_request_error';
  const code = parsed?.code ?? 'upstream_error';
  return new UpstreamError(
    new ApiError(status, message, type, code, {}, parsed?.param ?? null),
    status === 409 ? 'conflict' : 'final',
  );
}

/**
 * Server-sent events of a body, parsed by eventsource-parser; pulls the next chunk only when
 * asked. With `timing`, a body silent too long is cut (first-byte and idle timeouts).
 */
export async function* sseEvents(
  body: AsyncIterable<Buffer> & { destroy(e?: Error): void },
  timing?: StreamTiming,
): AsyncGenerator<EventSourceMessage> {
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => pending.push(e) });
  const decoder = new TextDecoder();
  const watch = timing && new StreamWatchdog(body, timing);
  try {
    for await (const chunk of body) {
      watch?.touch();
      parser.feed(decoder.decode(chunk, { stream: true }));
      while (pending.length) yield pending.shift()!;
    }
  } finally {
    watch?.stop();
  }
  parser.feed(decoder.decode() + '\n\n');
  while (pending.length) yield pending.shift()!;
}

/** The stream timing of a call, from its attempt's timeouts. */
export function streamTiming(
  call: { deployment: Deployment; timeouts: AttemptTimeouts },
  startedAt: number,
): StreamTiming {
  return {
    startedAt,
    firstByteMs: call.timeouts.firstByteMs,
    idleMs: call.timeouts.idleMs,
    label: `${call.deployment.provider} upstream of ${call.deployment.id}`,
  };
}
