import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Params } from 'nestjs-pino';
import pino, { DestinationStream } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { AppConfig } from '@app/config';
import { routePattern } from './http-metrics.middleware';
import { SecretScrubber } from './redact';
import { TickBatch } from './tick-writes';

/**
 * Paths redacted from every log line by pino (structured fields). Keys, JWTs, master keys
 * and passwords travel in these headers and body fields. The request serializer below
 * logs no headers or bodies at all; these paths cover objects passed to the logger by
 * hand, and SecretScrubber (redact.ts) then scrubs the serialized line as a whole.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.body.password',
  'req.body.key',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'password',
  'key',
  'token',
  'access_token',
  'authorization',
  'apiKey',
  'masterKey',
  '*.password',
  '*.key',
  '*.token',
  '*.apiKey',
  '*.access_token',
  '*.authorization',
  '*.masterKey',
  // TypeORM's QueryFailedError carries the bound parameters (hashes, emails).
  'err.parameters',
  'err.driverError.parameters',
];

const SAFE_ID = /^[\w.:-]{1,128}$/;

/** Honors a sane incoming X-Request-Id, else makes one; echoed on the response. */
export function requestIdFor(req: IncomingMessage, res?: ServerResponse): string {
  const existing = (req as unknown as { id?: string }).id;
  if (existing) return existing;
  const header = req.headers['x-request-id'];
  const id = typeof header === 'string' && SAFE_ID.test(header) ? header : randomUUID();
  (req as unknown as { id: string }).id = id;
  res?.setHeader('x-request-id', id);
  return id;
}

type WithPrincipal = IncomingMessage & {
  principal?: { tenantId?: string; userId?: string | null; apiKeyId?: string; kind?: string };
  route?: { path?: string };
  baseUrl?: string;
};

/** The password part of a postgres:// or redis:// URL, so it is scrubbed wherever it shows up. */
function urlPassword(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}

export interface LogDestination extends DestinationStream {
  /** Where lines went (tests); the file path when LOG_FILE is set. */
  readonly file?: string;
  readonly writable: true;
  /** `text` as the scrubber leaves it: for a field of a line written with `writeClean`. */
  scrub(text: string): string;
  /**
   * A line whose every field is free of secrets by construction or was passed through
   * `scrub` (the access line, writeAccessLine): written without the whole-line scrub, with
   * the other lines of this event-loop turn (process.nextTick), before any later line.
   */
  writeClean(line: string): void;
}

/**
 * Where log lines go: stdout (pretty on a development TTY, else JSON lines) and, with
 * LOG_FILE, also that file as JSON lines (parent directories created, appended, written
 * synchronously so `tail -f` sees a line as soon as it is logged and nothing is lost at
 * exit; access lines at the end of the event loop's turn in which they were logged, all of
 * that turn's in one write). Every line passes through the SecretScrubber first.
 */
export function logDestination(
  config: AppConfig,
  stdout: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout,
): LogDestination {
  const scrubber = new SecretScrubber([
    config.MASTER_KEY,
    config.JWT_SECRET,
    config.METRICS_TOKEN,
    config.ADMIN_PASSWORD,
    urlPassword(config.DATABASE_URL),
    urlPassword(config.REDIS_URL),
    config.REDIS_PASSWORD,
    config.REDIS_SENTINEL_PASSWORD,
  ]);
  const pretty =
    config.NODE_ENV === 'development' && stdout.isTTY
      ? prettyFactory({
          colorize: true,
          singleLine: true,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname',
        })
      : undefined;
  const file = config.LOG_FILE
    ? pino.destination({ dest: config.LOG_FILE, mkdir: true, sync: true })
    : undefined;
  const writeNow = (clean: string) => {
    if (config.LOG_STDOUT) stdout.write(pretty ? pretty(clean) : clean);
    file?.write(clean);
  };
  // Access lines leave with the other access lines of their event-loop turn, in one write at
  // its end (one syscall per destination instead of one per request: issue 18); any other
  // line first writes what waits, so lines keep their order; what waits at exit is written
  // (tick-writes.ts). A development terminal gets each line at once.
  const batch = new TickBatch(writeNow);
  const writeClean = pretty ? writeNow : (clean: string) => batch.add(clean);
  return {
    file: config.LOG_FILE,
    writable: true, // lets pino(destination) recognise it as a stream
    write: (line: string) => {
      batch.flush();
      writeNow(scrubber.scrub(line));
    },
    scrub: (text: string) => scrubber.scrub(text),
    writeClean,
  };
}

/** Status as logged and counted: a response closed before it ended is 499 (client went away). */
function statusOf(res: ServerResponse): number {
  return res.writableFinished ? res.statusCode : 499;
}

/** The access line's level and message (pino-http's customLogLevel and success message below). */
const accessLevel = (res: ServerResponse, err?: unknown) =>
  err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info';
const accessMessage = (res: ServerResponse) =>
  res.writableFinished ? 'request completed' : 'request aborted';
const LEVEL_VALUE = { info: 30, warn: 40 } as const;

/** What writeAccessLine needs to know of a request. */
export interface AccessFields {
  id: string;
  method: string;
  /** The path without its query string. */
  path: string;
  /** The route pattern (routePattern), `unmatched` when none was reached. */
  route: string;
  principal?: WithPrincipal['principal'];
  /** Date.now() when the request arrived. */
  startedAt: number;
}

/**
 * The access line pino-http writes for a request (pinoParams: the same fields in the same
 * order, message and level), for requests served outside Express (the gateway's hot path),
 * called once `res` has closed. No per-request child logger: one string built at the end,
 * the scrubber run over the one field a client chooses (the request id: `sk-...` fits its
 * pattern); path and route are the hot route's own, the ids are UUIDs. 5xx lines carry an
 * error and go through the logger as pino-http's do.
 */
export function writeAccessLine(root: pino.Logger | undefined, res: ServerResponse, f: AccessFields): void {
  const level = accessLevel(res);
  if (!root?.isLevelEnabled(level)) return;
  const p = f.principal;
  const status = statusOf(res);
  const latency = Date.now() - f.startedAt;
  const dest = (root as unknown as Record<symbol, unknown>)[
    pino.symbols.streamSym
  ] as Partial<LogDestination>;
  if (level === 'error' || !dest.writeClean || !dest.scrub) {
    const fields = {
      req: { id: f.id, method: f.method, path: f.path },
      route: f.route,
      tenant_id: p?.tenantId,
      user_id: p?.userId,
      key_id: p?.apiKeyId,
      principal: p?.kind,
      status,
      latency_ms: latency,
      ...(level === 'error' ? { err: new Error(`failed with status code ${res.statusCode}`) } : {}),
    };
    root[level](fields, level === 'error' ? 'request failed' : accessMessage(res));
    return;
  }
  const q = JSON.stringify;
  const chindings = (root as unknown as Record<symbol, string>)[pino.symbols.chindingsSym];
  let line = `{"level":${LEVEL_VALUE[level]},"time":${Date.now()}${chindings},"req":{"id":${q(dest.scrub(f.id))},"method":${q(f.method)},"path":${q(f.path)}},"route":${q(f.route)}`;
  if (p?.tenantId !== undefined) line += `,"tenant_id":${q(p.tenantId)}`;
  if (p?.userId !== undefined) line += `,"user_id":${q(p.userId)}`;
  if (p?.apiKeyId !== undefined) line += `,"key_id":${q(p.apiKeyId)}`;
  if (p?.kind !== undefined) line += `,"principal":${q(p.kind)}`;
  dest.writeClean(`${line},"status":${status},"latency_ms":${latency},"msg":${q(accessMessage(res))}}\n`);
}

export function pinoParams(
  config: AppConfig,
  destination: DestinationStream = logDestination(config),
): Params {
  return {
    pinoHttp: [
      {
        level: config.LOG_LEVEL,
        redact: { paths: REDACT_PATHS, censor: '[redacted]' },
        genReqId: (req, res) => requestIdFor(req, res),
        autoLogging: { ignore: (req) => req.url === '/health/live' || req.url === '/metrics' },
        customAttributeKeys: { responseTime: 'latency_ms' },
        serializers: {
          // No headers, no body, no query string: the path is enough and cannot carry a key.
          req: (req: { id: string; method: string; url: string }) => ({
            id: req.id,
            method: req.method,
            path: req.url.split('?')[0],
          }),
        },
        // Called at request start (nothing known yet: all undefined, so nothing is bound)
        // and again when the response ends, when the route and the principal are known.
        customProps: (req, res) => {
          const r = req as WithPrincipal;
          const p = r.principal;
          const ended = res.writableEnded || res.destroyed;
          return {
            route: ended ? routePattern(r as never) : undefined,
            tenant_id: p?.tenantId,
            user_id: p?.userId,
            key_id: p?.apiKeyId,
            principal: p?.kind,
          };
        },
        customSuccessObject: (_req, res, val: Record<string, unknown>) => ({
          status: statusOf(res),
          latency_ms: val.latency_ms,
        }),
        customErrorObject: (_req, res, err, val: Record<string, unknown>) => ({
          status: statusOf(res),
          latency_ms: val.latency_ms,
          err,
        }),
        customSuccessMessage: (_req, res) => accessMessage(res),
        customErrorMessage: () => 'request failed',
        customLogLevel: (_req, res, err) => accessLevel(res, err),
      },
      destination,
    ],
  };
}
