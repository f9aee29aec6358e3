import { Agent, request } from 'node:http';
import { randomUUID } from 'node:crypto';

/** One request of a load run, and what its client saw. */
export interface Shot {
  /** Gateway base URL. */
  base: string;
  /** Which instance (a label for the figures). */
  instance: string;
  key: string;
  body: Record<string, unknown>;
  /** Sent as X-Request-Id (the gateway keeps it as the ledger row's request_id). */
  requestId?: string;
  /** Client-side bound (default 20 s): the request is destroyed after it. */
  timeoutMs?: number;
  /** Labels for the figures (tenant / user / key ids...). */
  tags?: Record<string, string>;
}

export interface Result {
  shot: Shot;
  requestId: string;
  stream: boolean;
  /** HTTP status; 0 when no response head arrived (connection refused/reset, client timeout). */
  status: number;
  code?: string;
  type?: string;
  message?: string;
  retryAfter?: string;
  /** Usage the client was told (JSON `usage`, or the stream's usage chunk). */
  usage?: { prompt: number; completion: number };
  /** The code of an error event inside a stream. */
  sseError?: string;
  /** The answer was complete (JSON parsed, or `data: [DONE]` seen). */
  complete: boolean;
  netError?: string;
  /** performance.now() at send, at the response head, at the end. */
  t0: number;
  tHead: number;
  tEnd: number;
  rawBody: string;
}

const agents = new Map<string, Agent>();
function agentFor(base: string): Agent {
  let a = agents.get(base);
  if (!a) {
    a = new Agent({ keepAlive: true, maxSockets: Infinity, keepAliveMsecs: 1000 });
    agents.set(base, a);
  }
  return a;
}

/** Closes the keep-alive sockets (after a load phase, or before killing an instance). */
export function dropAgents(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}

export function shoot(s: Shot): Promise<Result> {
  const requestId = s.requestId ?? randomUUID();
  const stream = s.body.stream === true;
  const payload = Buffer.from(JSON.stringify(s.body));
  const t0 = performance.now();
  return new Promise<Result>((resolve) => {
    const r: Result = {
      shot: s,
      requestId,
      stream,
      status: 0,
      complete: false,
      t0,
      tHead: 0,
      tEnd: 0,
      rawBody: '',
    };
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.tEnd = performance.now();
      interpret(r);
      resolve(r);
    };
    const req = request(
      `${s.base}/v1/chat/completions`,
      {
        method: 'POST',
        agent: agentFor(s.base),
        headers: {
          'content-type': 'application/json',
          'content-length': payload.length,
          authorization: `Bearer ${s.key}`,
          'x-request-id': requestId,
        },
      },
      (res) => {
        r.status = res.statusCode ?? 0;
        r.tHead = performance.now();
        const ra = res.headers['retry-after'];
        if (typeof ra === 'string') r.retryAfter = ra;
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (r.rawBody.length < 1_000_000) r.rawBody += c;
        });
        res.on('end', finish);
        res.on('error', (e) => {
          r.netError = e.message;
          finish();
        });
        res.on('close', finish);
      },
    );
    const timer = setTimeout(() => {
      r.netError = 'client timeout';
      req.destroy(new Error('client timeout'));
    }, s.timeoutMs ?? 20_000);
    req.on('error', (e) => {
      r.netError ??= e.message;
      finish();
    });
    req.end(payload);
  });
}

function interpret(r: Result): void {
  const text = r.rawBody;
  if (!r.stream || !text.startsWith('data: ')) {
    try {
      const body = JSON.parse(text);
      if (body?.error) {
        r.code = body.error.code ?? undefined;
        r.type = body.error.type;
        r.message = body.error.message;
      } else if (body?.usage) {
        r.usage = { prompt: body.usage.prompt_tokens, completion: body.usage.completion_tokens };
        r.complete = true;
      }
    } catch {
      /* cut or not JSON */
    }
    return;
  }
  for (const block of text.split('\n\n')) {
    if (!block.startsWith('data: ')) continue;
    const data = block.slice(6);
    if (data === '[DONE]') {
      r.complete = !r.sseError;
      continue;
    }
    try {
      const ev = JSON.parse(data);
      if (ev.error) r.sseError = ev.error.code ?? ev.error.type ?? 'error';
      if (ev.usage) r.usage = { prompt: ev.usage.prompt_tokens, completion: ev.usage.completion_tokens };
    } catch {
      /* a chunk cut by a killed connection */
    }
  }
}

/** Fires every shot at once and waits for all. */
export function burst(shots: Shot[]): Promise<Result[]> {
  return Promise.all(shots.map(shoot));
}

/**
 * A bounded load loop: `concurrency` workers send `make(i)` one after the other until
 * `maxRequests` were sent, `maxMs` passed, or `stop()` says so. Always ends by itself.
 */
export async function loop(o: {
  concurrency: number;
  maxRequests: number;
  maxMs: number;
  make: (i: number) => Shot;
  stop?: () => boolean;
  pauseMs?: number;
}): Promise<Result[]> {
  const out: Result[] = [];
  const end = Date.now() + o.maxMs;
  let i = 0;
  const worker = async () => {
    while (i < o.maxRequests && Date.now() < end && !o.stop?.()) {
      out.push(await shoot(o.make(i++)));
      if (o.pauseMs) await new Promise((r) => setTimeout(r, o.pauseMs));
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * One request without keep-alive (so nothing lingers after a spec): for the admin API,
 * metrics and the fake upstream's control endpoints.
 */
export function call(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const payload =
    body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: false,
        headers: {
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    req.end(payload);
  });
}
