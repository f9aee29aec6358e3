import type { Server } from 'node:http';
import { INestApplication, ValidationPipe } from '@nestjs/common';
import { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { json, NextFunction, Request, Response } from 'express';
import { Logger } from 'nestjs-pino';
import { AppConfig } from '@app/config';
import {
  AllExceptionsFilter,
  isAnthropicPath,
  toAnthropicErrorBody,
  answerClientError,
  ApiError,
  httpMetricsMiddleware,
  jsonBodyError,
  MetricsService,
  QuietStartLogger,
  requestIdFor,
  toErrorResponse,
} from '@app/observability';
import { installHotPath } from './hot-path';
import { completeOpenApi } from './openapi';

export function buildOpenApi(app: INestApplication) {
  const doc = new DocumentBuilder()
    .setTitle('llm-gateway')
    .setDescription(
      'Multi-tenant LLM API gateway. Admin API: `Authorization: Bearer <JWT from /auth/login or the master key>` ' +
        '(the master key acts in the tenant named by `X-Tenant-ID`). Completion API: a virtual key in `X-API-Key` or `Authorization: Bearer sk-...`.',
    )
    .setVersion('0.1.0')
    .addBearerAuth(
      { type: 'http', scheme: 'bearer', description: 'JWT from POST /auth/login, or the master key' },
      'bearer',
    )
    .addApiKey(
      { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'Virtual API key (sk-...)' },
      'api-key',
    )
    .build();
  return completeOpenApi(SwaggerModule.createDocument(app, doc));
}

/** The answer to an error of the body stage (bad JSON, too large, ...), which never reaches Nest's filters. */
function answerBodyError(err: unknown, req: Request, res: Response): void {
  const { status, body } = toErrorResponse(err, req);
  res.status(status).json(isAnthropicPath(req.path) ? toAnthropicErrorBody(status, body) : body);
}

export interface ConfigureOptions {
  /**
   * The hot path for the metered completion routes (hot-path.ts; default on). Off, Nest's
   * controllers serve them: only the test that holds the two to the same answers turns it off.
   */
  hotPath?: boolean;
}

/** Everything main.ts applies to the app; tests call it too so they exercise the same stack. */
export function configureApp(
  app: NestExpressApplication,
  config: AppConfig,
  options: ConfigureOptions = {},
): void {
  app.useLogger(new QuietStartLogger(app.get(Logger)));
  app.disable('x-powered-by');
  // Requests Node's parser refuses (huge headers, a bad request line) get the envelope too.
  app.getHttpServer().on('clientError', answerClientError);
  const server = app.getHttpServer() as Server;
  server.keepAliveTimeout = config.HTTP_KEEP_ALIVE_TIMEOUT_MS;
  // must outlast keepAliveTimeout, or a request arriving at its end could be cut
  server.headersTimeout = config.HTTP_KEEP_ALIVE_TIMEOUT_MS + 1000;
  app.set('trust proxy', config.trustProxy);
  app.use((req: Request, res: Response, next: NextFunction) => {
    requestIdFor(req, res);
    next();
  });
  app.use(httpMetricsMiddleware(app.get(MetricsService)));
  const jsonParser = json({ limit: config.bodyLimitBytes, type: ['application/json', 'application/*+json'] });
  app.use(jsonParser);
  // Too deep, or text PostgreSQL and the validators cannot take (NUL, lone surrogates): 400.
  // Chat bodies may hold any text: it only goes upstream.
  app.use((req: Request, _res: Response, next: NextFunction) =>
    next(jsonBodyError(req.body, req.path.endsWith('/chat/completions') || isAnthropicPath(req.path))),
  );
  // body-parser errors (bad JSON, too large) never reach Nest's filters: answer them here, in the envelope.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (!err) return next();
    answerBodyError(err, req, res);
  });
  const validation = new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    exceptionFactory: (errors) => {
      const first = errors[0];
      const flatten = (e: typeof first, path: string): string[] => {
        const here = Object.values(e.constraints ?? {}).map((m) =>
          path && !m.startsWith(path) ? `${path}: ${m}` : m,
        );
        return here.concat(
          ...(e.children ?? []).map((c) => flatten(c, path ? `${path}.${c.property}` : c.property)),
        );
      };
      const messages = errors.flatMap((e) => flatten(e, e.property));
      return ApiError.badRequest(
        messages.slice(0, 5).join('; ') || 'Invalid request',
        'invalid_request',
        first?.property ?? null,
      );
    },
  });
  app.useGlobalPipes(validation);
  app.useGlobalFilters(new AllExceptionsFilter());
  // No app.enableShutdownHooks(): main.ts owns SIGTERM/SIGINT (GracefulShutdown) so the server
  // stops accepting and drains streams before Nest's shutdown hooks run.
  SwaggerModule.setup('docs', app, () => buildOpenApi(app), { jsonDocumentUrl: 'docs-json' });
  // The metered completion routes, ahead of Express (the same steps, services and answers).
  if (options.hotPath !== false)
    installHotPath(app, { jsonParser, answerBodyError, bodyLimitBytes: config.bodyLimitBytes, validation });
}
