import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Params } from 'nestjs-pino';
import type { AppConfig } from '@app/config';

/**
 * Paths redacted from every log line. Keys, JWTs, master keys and passwords travel in
 * these headers and body fields; pino replaces them with "[redacted]".
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.body.password',
  'req.body.key',
  'res.headers["set-cookie"]',
  '*.password',
  '*.key',
  '*.access_token',
  '*.authorization',
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
  principal?: { tenantId?: string; userId?: string; apiKeyId?: string; kind?: string };
  route?: { path?: string };
};

export function pinoParams(config: AppConfig): Params {
  const pretty = config.NODE_ENV === 'development' && !config.LOG_FILE && process.stdout.isTTY;
  const targets: { target: string; options: Record<string, unknown>; level: string }[] = [];
  if (pretty)
    targets.push({
      target: 'pino-pretty',
      options: { singleLine: true, translateTime: 'SYS:HH:MM:ss.l' },
      level: config.LOG_LEVEL,
    });
  else targets.push({ target: 'pino/file', options: { destination: 1 }, level: config.LOG_LEVEL });
  if (config.LOG_FILE)
    targets.push({
      target: 'pino/file',
      options: { destination: config.LOG_FILE, mkdir: true },
      level: config.LOG_LEVEL,
    });
  return {
    pinoHttp: {
      level: config.LOG_LEVEL,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      transport: config.LOG_LEVEL === 'silent' ? undefined : { targets },
      genReqId: (req, res) => requestIdFor(req, res),
      autoLogging: { ignore: (req) => req.url === '/health/live' || req.url === '/metrics' },
      serializers: {
        req: (req: { id: string; method: string; url: string; raw?: WithPrincipal }) => ({
          id: req.id,
          method: req.method,
          url: req.url,
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      customProps: (req) => {
        const r = req as WithPrincipal;
        const p = r.principal;
        return {
          route: r.route?.path,
          tenant_id: p?.tenantId,
          user_id: p?.userId,
          key_id: p?.apiKeyId,
          principal: p?.kind,
        };
      },
      customLogLevel: (_req, res, err) =>
        err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
    },
  };
}
