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
        // Silence inside a body: streams have their own watchdog (SseStream), answers the total.
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

/** A streamed event's JSON `data`; a 502 (not retried) naming `where` when it is not JSON. */
export function eventJson<T>(data: string, where: string, what = 'event'): T {
  try {
    return JSON.parse(data) as T;
  } catch {
    throw UpstreamError.badGateway(`${where} sent a malformed ${what}`, false);
  }
}

/** What an SseStream does with its body's events (the provider's part of a stream). */
export interface SseHandler<T> {
  /**
   * One event: `push` the items it makes (none, one or several); return true when it
   * completes the stream (the rest of the body is not read), `'cut'` when the gateway ends
   * it (the body and its connection are dropped: the upstream stops). Throwing ends the stream with
   * that error, after the items pushed before it. `bytes`: the event exactly as received
   * (`data: <data>\n\n`, a view of the body's chunk), when it came in that plain form.
   */
  event(e: EventSourceMessage, push: (item: T) => void, bytes?: Buffer): boolean | 'cut' | void;
  /** The body ended before an event completed the stream: throw when that is a failure. */
  end?(): void;
  /** What the consumer sees of a failure (a transport error, or one thrown by `event` / `end`). */
  error(e: unknown): unknown;
}

type SseBody = UpstreamResponse['body'];

const LF = 0x0a;
const CR = 0x0d;
const DATA = Buffer.from('data: ');

/** `data: ` at `at`. */
function isDataLine(chunk: Buffer, at: number): boolean {
  for (let i = 0; i < DATA.length; i++) if (chunk[at + i] !== DATA[i]) return false;
  return true;
}

/**
 * What a consumer of `each` does with one item: nothing more (undefined or false), waits
 * for a promise (the next item comes once it settles; true from it ends the stream), or ends
 * the stream (true: the rest is not read).
 */
export type ItemStep = void | boolean | Promise<void | boolean>;

/**
 * Items a consumer can take as they come without a promise per item (SseStream): `ready`
 * waits for the first one without taking it, `each` hands them over. `each` (exchange.ts)
 * uses it when an iterable offers it.
 */
export interface ItemSource<T> extends AsyncIterable<T> {
  /** Resolves once an item is waiting or the stream ended; rejects with a failure that came first. */
  ready(): Promise<void>;
  /**
   * Calls `fn` with each item, synchronously as the body's data arrives (the body is paused
   * while a promise `fn` returned is pending); resolves when the stream ended or `fn` ended
   * it, rejects with the stream's failure (after the items before it) or what `fn` threw.
   * Either way the body is left as the iterator's end or `return` leaves it.
   */
  each(fn: (item: T) => ItemStep): Promise<void>;
}

/**
 * The server-sent events of a streamed body, read as they arrive (the body's 'data' events,
 * parsed by eventsource-parser) and handed to the consumer, as an async iterator or to a
 * callback (`each`): items wait in a queue while the consumer is busy (the body is paused
 * then: backpressure to the upstream), and go straight to a consumer already waiting. One
 * promise per item for the iterator, none for `each`; no generator layers
 * (docs/architecture.md, "Streams"). With `timing`, a body silent too long is cut
 * (first-byte and idle timeouts). The body is destroyed when the stream completes early,
 * fails, or the consumer leaves (`return`, or `each`'s callback ends it or throws).
 */
export class SseStream<T> implements AsyncIterableIterator<T>, ItemSource<T> {
  private readonly queue: T[] = [];
  private head = 0;
  /** No item will be added: the stream completed, failed or was left. */
  private closed = false;
  private failure: { error: unknown } | undefined;
  private waiter: { resolve(r: IteratorResult<T>): void; reject(e: unknown): void } | undefined;
  /** `ready`'s caller, waiting for the first item. */
  private readyWaiter: { resolve(): void; reject(e: unknown): void } | undefined;
  /** `each`'s callback and its promise; `busy` while a promise it returned is pending. */
  private sink: ((item: T) => ItemStep) | undefined;
  private sinkDone: { resolve(): void; reject(e: unknown): void } | undefined;
  private busy = false;
  private readonly parser = createParser({ onEvent: (e) => this.onEvent(e) });
  private readonly decoder = new TextDecoder();
  private readonly watch: StreamWatchdog | undefined;
  /** Nothing of a partial event or character is held: the next chunk may be read by `plain`. */
  private clean = true;

  constructor(
    private readonly body: SseBody,
    private readonly handler: SseHandler<T>,
    timing?: StreamTiming,
  ) {
    this.watch = timing && new StreamWatchdog(body, timing);
    body.on('data', this.onData);
    body.on('end', this.onEnd);
    body.on('error', this.onError);
    body.on('close', this.onClose);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head++];
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
        if (!this.closed && this.body.isPaused()) this.body.resume();
      }
      return Promise.resolve({ value, done: false });
    }
    const f = this.takeFailure();
    if (f) return Promise.reject(f.error);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    if (this.body.isPaused()) this.body.resume();
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The consumer left: the rest of the body is not read. */
  return(): Promise<IteratorResult<T>> {
    this.queue.length = 0;
    this.head = 0;
    this.failure = undefined;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  ready(): Promise<void> {
    if (this.head < this.queue.length || (this.closed && !this.failure)) return Promise.resolve();
    const f = this.takeFailure();
    if (f) return Promise.reject(f.error);
    if (this.body.isPaused()) this.body.resume();
    return new Promise((resolve, reject) => (this.readyWaiter = { resolve, reject }));
  }

  each(fn: (item: T) => ItemStep): Promise<void> {
    return new Promise((resolve, reject) => {
      this.sink = fn;
      this.sinkDone = { resolve, reject };
      this.flush();
    });
  }

  /** Hands `each`'s callback one item (it is not busy); a promise it returns holds the next ones. */
  private deliver(item: T): void {
    let step: ItemStep;
    try {
      step = this.sink!(item);
    } catch (e) {
      return this.leave(e);
    }
    if (step === true) return this.leave();
    if (!step) return;
    this.busy = true;
    step.then(
      (end) => {
        this.busy = false;
        if (end === true) this.leave();
        else this.flush();
      },
      (e: unknown) => {
        this.busy = false;
        this.leave(e);
      },
    );
  }

  /** `each`: the queued items while the callback takes them; then more from the body, or the end. */
  private flush(): void {
    while (!this.busy && this.sinkDone && this.head < this.queue.length) {
      const item = this.queue[this.head++];
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      }
      this.deliver(item);
    }
    if (this.busy || !this.sinkDone || this.head < this.queue.length) return;
    if (this.closed) this.settleSink();
    else if (this.body.isPaused()) this.body.resume();
  }

  /** `each`'s callback ended the stream (or threw `error`): as `return`, and its promise settles. */
  private leave(...error: [unknown?]): void {
    this.queue.length = 0;
    this.head = 0;
    this.failure = error.length ? { error: error[0] } : undefined;
    this.close();
    this.settleSink();
  }

  private settleSink(): void {
    const done = this.sinkDone;
    if (!done) return;
    this.sinkDone = undefined;
    this.sink = undefined;
    const f = this.takeFailure();
    if (f) done.reject(f.error);
    else done.resolve();
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    this.watch?.touch();
    if (!(this.clean && this.plain(chunk))) {
      this.parser.feed(this.decoder.decode(chunk, { stream: true }));
      // the parser and the decoder hold nothing once a chunk ends with a blank line
      const n = chunk.length;
      this.clean = n >= 2 && chunk[n - 1] === LF && chunk[n - 2] === LF;
    }
    // items nobody took yet: read no more until the consumer asks
    if (this.head < this.queue.length && !this.closed) this.body.pause();
  };

  private readonly onEnd = (): void => {
    if (this.closed) return;
    this.parser.feed(this.decoder.decode() + '\n\n');
    if (this.closed) return;
    try {
      this.handler.end?.();
    } catch (e) {
      return this.fail(e);
    }
    this.close();
  };

  private readonly onError = (e: unknown): void => this.fail(e);

  /** Closed without its end or an error (destroyed by someone else): cut short. */
  private readonly onClose = (): void => {
    if (!this.closed && !this.body.readableEnded)
      this.fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
  };

  /**
   * The common chunk without the parser: whole events of one `data: ` line each (nothing
   * else: no CR, comment, other field or event split across chunks), each handed on with its
   * own bytes. False (nothing done) for any other chunk: the parser reads it.
   */
  private plain(chunk: Buffer): boolean {
    const n = chunk.length;
    if (n < 8 || chunk[n - 1] !== LF || chunk[n - 2] !== LF || chunk.indexOf(CR) >= 0) return false;
    for (let at = 0; at < n; at = chunk.indexOf(LF, at) + 2)
      if (!isDataLine(chunk, at) || chunk[chunk.indexOf(LF, at) + 1] !== LF) return false;
    for (let at = 0; at < n && !this.closed;) {
      const end = chunk.indexOf(LF, at);
      this.onEvent(
        { id: undefined, event: undefined, data: chunk.toString('utf8', at + DATA.length, end) },
        chunk.subarray(at, end + 2),
      );
      at = end + 2;
    }
    return true;
  }

  private onEvent(e: EventSourceMessage, bytes?: Buffer): void {
    if (this.closed) return;
    try {
      const end = this.handler.event(e, this.push, bytes);
      if (end) this.close(end === true);
    } catch (err) {
      this.fail(err);
    }
  }

  private readonly push = (item: T): void => {
    if (this.closed) return;
    if (this.sinkDone && !this.busy && this.head === this.queue.length) return this.deliver(item);
    const w = this.waiter;
    if (w && this.head === this.queue.length) {
      this.waiter = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.queue.push(item);
      const r = this.readyWaiter;
      this.readyWaiter = undefined;
      r?.resolve();
    }
  };

  /** The failure to report, once: whoever takes it (iterator, `ready`, `each`) gets it; later calls see the end. */
  private takeFailure(): { error: unknown } | undefined {
    const f = this.failure;
    this.failure = undefined;
    return f;
  }

  private fail(e: unknown): void {
    if (this.closed) return;
    this.failure = { error: this.handler.error(e) };
    this.close();
  }

  /**
   * No more items: stops the watchdog and leaves the body. A stream that completed (its last
   * event came) lets the body finish, so its connection goes back to the pool; otherwise
   * (failed, left, cut) the body is destroyed, and its connection with it.
   */
  private close(completed = false): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    this.body.off('data', this.onData);
    this.body.off('end', this.onEnd);
    this.body.off('close', this.onClose);
    // keeps an error listener: a late error of a destroyed body is not an uncaught one
    if (completed) finish(this.body);
    else if (!this.body.destroyed) this.body.destroy();
    // a waiting consumer has nothing queued before this: it gets the end, or the failure
    const r = this.readyWaiter;
    if (r) {
      this.readyWaiter = undefined;
      const f = this.takeFailure();
      if (f) r.reject(f.error);
      else r.resolve();
    }
    if (this.sinkDone && !this.busy && this.head === this.queue.length) this.settleSink();
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    const f = this.takeFailure();
    if (f) w.reject(f.error);
    else w.resolve({ value: undefined, done: true });
  }
}

/** What an upstream may still send after its stream's last event before its connection is dropped. */
const AFTER_END = { bytes: 64 * 1024, ms: 2000 };

/**
 * Reads what is left of a body whose stream completed (usually nothing but the end of the
 * chunked encoding, already on its way): the connection is reused. More than a little, or
 * for more than a moment, and it is destroyed (a stream's last event ends it for the client).
 */
function finish(body: SseBody): void {
  if (body.destroyed || body.readableEnded) return;
  let left = AFTER_END.bytes;
  const timer = setTimeout(() => body.destroy(), AFTER_END.ms);
  body.once('close', () => clearTimeout(timer));
  body.on('data', (c: Buffer) => {
    left -= c.length;
    if (left < 0) body.destroy();
  });
  body.resume();
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
