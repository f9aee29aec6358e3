import { createParser, EventSourceMessage } from 'eventsource-parser';
import { Dispatcher, Pool } from 'undici';
import { ApiError } from '@app/observability';
import type { Deployment } from '../routing/routing-table';
import { UpstreamError } from './provider';

export interface UpstreamTimeouts {
  connectMs: number;
  /** Until the response headers; also the longest silence between two body chunks. */
  firstByteMs: number;
}

export type UpstreamResponse = Dispatcher.ResponseData;

/** The fields of an upstream error body the client sees. */
export interface ParsedUpstreamError {
  message?: string;
  type?: string;
  code?: string | null;
  param?: string | null;
}

const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/**
 * Pooled keep-alive HTTP to the upstreams: one undici Pool per origin, bounded by the
 * deployment's max_connections. Maps every transport failure to an UpstreamError.
 */
export class UpstreamHttp {
  private readonly pools = new Map<string, Pool>();
  private readonly targets = new Map<string, { origin: string; path: string }>();

  constructor(private readonly timeouts: UpstreamTimeouts) {}

  post(
    d: Deployment,
    path: string,
    headers: Record<string, string>,
    body: string,
    signal: AbortSignal,
  ): Promise<UpstreamResponse> {
    return this.request(d, 'POST', path, headers, body, signal);
  }

  /** `path` is appended to the deployment's base URL; `query` (without `?`) is passed as is. */
  async request(
    d: Deployment,
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal,
    query = '',
  ): Promise<UpstreamResponse> {
    const target = this.target(d.baseUrl + path);
    try {
      return await this.pool(target.origin, d.maxConnections).request({
        method,
        path: query ? `${target.path}?${query}` : target.path,
        headers,
        body,
        signal,
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

  private pool(origin: string, connections: number): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: this.timeouts.connectMs,
        headersTimeout: this.timeouts.firstByteMs,
        bodyTimeout: this.timeouts.firstByteMs,
      });
      this.pools.set(origin, pool);
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
      return UpstreamError.timeout(`The ${label} did not accept a connection in time`, true);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return UpstreamError.timeout(`The ${label} did not answer in time`);
    case 'UND_ERR_BODY_TIMEOUT':
      return UpstreamError.timeout(`The ${label} stopped sending`);
  }
  if (RETRYABLE_CODES.has(code))
    return UpstreamError.badGateway(`The ${label} is unreachable (${code.replace(/^UND_ERR_/, '')})`, true);
  return UpstreamError.badGateway(`The ${label} failed (${code || (e as Error)?.name || 'error'})`, false);
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
 * A non-2xx upstream answer as the client should see it: 4xx passed on (the upstream's
 * message, type and code), 429 kept with its Retry-After, 5xx -> 502 (retryable). 401/403
 * are about the gateway's own credential and may echo part of it: a 502 without the message.
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
      true,
      'upstream_auth_failed',
    );
  }
  if (status >= 500 || status < 400) {
    const detail = parsed?.message ? `: ${parsed.message.slice(0, 300)}` : '';
    return UpstreamError.badGateway(`The ${label} answered ${status}${detail}`, status >= 500);
  }
  const message = parsed?.message ?? `The ${label} answered ${status}`;
  if (status === 429) {
    const retryAfter = res.headers['retry-after'];
    const headers: Record<string, string> =
      typeof retryAfter === 'string' ? { 'retry-after': retryAfter } : {};
    return new UpstreamError(
      new ApiError(
        429,
        message,
        parsed?.type ?? 'rate_limit_exceeded',
        parsed?.code ?? 'upstream_rate_limited',
        headers,
      ),
      false,
    );
  }
  const type = parsed?.type ?? 'invalid_request_error';
  const code = parsed?.code ?? 'upstream_error';
  return new UpstreamError(new ApiError(status, message, type, code, {}, parsed?.param ?? null), false);
}

/** Server-sent events of a body, parsed by eventsource-parser; pulls the next chunk only when asked. */
export async function* sseEvents(body: AsyncIterable<Buffer>): AsyncGenerator<EventSourceMessage> {
  const pending: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => pending.push(e) });
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    while (pending.length) yield pending.shift()!;
  }
  parser.feed(decoder.decode() + '\n\n');
  while (pending.length) yield pending.shift()!;
}
