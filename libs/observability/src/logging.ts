import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Params } from 'nestjs-pino';
import pino, { DestinationStream } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { AppConfig } from '@app/config';
import { routePattern } from './http-metrics.middleware';
import { SecretScrubber } from './redact';

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
}

/**
 * Where log lines go: stdout (pretty on a development TTY, else JSON lines) and, with
 * LOG_FILE, also that file as JSON lines (parent directories created, appended, written
 * synchronously so `tail -f` sees a line as soon as it is logged and nothing is lost at
 * exit). Every line passes through the SecretScrubber first.
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
  return {
    file: config.LOG_FILE,
    writable: true, // lets pino(destination) recognise it as a stream
    write(line: string) {
      const clean = scrubber.scrub(line);
      if (config.LOG_STDOUT) stdout.write(pretty ? pretty(clean) : clean);
      file?.write(clean);
    },
  };
}

/** Status as logged and counted: a response closed before it ended is 499 (client went away). */
function statusOf(res: ServerResponse): number {
  return res.writableFinished ? res.statusCode : 499;
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
        customSuccessMessage: (_req, res) => (res.writableFinished ? 'request completed' : 'request aborted'),
        customErrorMessage: () => 'request failed',
        customLogLevel: (_req, res, err) =>
          err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
      },
      destination,
    ],
  };
}
