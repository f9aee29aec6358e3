import { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { ValidationPipe } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Application, NextFunction, Request, Response } from 'express';
import { PinoLogger } from 'nestjs-pino';
import { clientAddress, KeyAdmission, KeyPrincipal, KeyRequest, KeyScope } from '@app/api-keys';
import { AuthService, LoginDto } from '@app/auth';
import { CompletionsService, EmbeddingsService, MessagesService, ResponsesService } from '@app/completions';
import {
  AllExceptionsFilter,
  AnthropicExceptionFilter,
  jsonBodyError,
  MetricsService,
  requestIdFor,
  trackHttpRequest,
  writeAccessLine,
} from '@app/observability';
import { RequestContext } from '@app/tenancy';

/** One route the hot path serves: what its Nest controller method does, minus Nest. */
interface HotRoute {
  /** The route pattern Nest registers (metrics and access-log label). */
  route: string;
  /** The key scope a metered route needs; none for the public login route. */
  scope?: KeyScope;
  /** Anthropic's error shape; any text in the body (as setup.ts's body check for these paths). */
  anthropic: boolean;
  anyText: boolean;
  serve(
    key: KeyPrincipal | null,
    body: unknown,
    req: IncomingMessage,
    res: ServerResponse,
    id: string,
  ): Promise<void>;
}

/** What hands a request on when the hot path does not serve it (Express), and parses a body it cannot. */
export interface HotPathDeps {
  /** setup.ts's JSON body parser (the same instance and limit Express uses). */
  jsonParser: (req: Request, res: Response, next: NextFunction) => void;
  /** setup.ts's answer to a body-stage error (bad JSON, too large, ...). */
  answerBodyError: (err: unknown, req: Request, res: Response) => void;
  bodyLimitBytes: number;
  /** setup.ts's global ValidationPipe (the same instance Nest runs on @Body() DTOs). */
  validation: ValidationPipe;
}

/** A body-stage error shaped as body-parser's (toErrorResponse reads `status` and `type`). */
class BodyError extends Error {
  readonly statusCode: number;
  constructor(
    readonly status: number,
    readonly type: string,
  ) {
    super(type);
    this.statusCode = status;
  }
}

/** Bodies the hot path reads itself; any other (charsets, encodings, chunked, too large) goes to body-parser. */
const PLAIN_JSON = /^application\/json(?:\s*;\s*charset=utf-8)?$/i;
const NOT_WS = /[^ \t\n\r]/;

/**
 * body-parser's json() for the common request (Content-Length within the limit, identity
 * encoding, UTF-8 JSON), with its results: undefined without a body, {} for an empty one,
 * 400 entity.parse.failed unless the first character is `{` or `[` and JSON.parse takes it.
 */
function readJson(req: IncomingMessage, done: (err: unknown, body?: unknown) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (c: Buffer) => {
    chunks.push(c);
    size += c.length;
  };
  const onError = () => {
    cleanup();
    done(new BodyError(400, 'request.aborted'));
  };
  const onEnd = () => {
    cleanup();
    let text = (chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)).toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // iconv-lite strips a BOM
    if (text.length === 0) return done(undefined, {});
    const first = NOT_WS.exec(text)?.[0];
    if (first !== '{' && first !== '[') return done(new BodyError(400, 'entity.parse.failed'));
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return done(new BodyError(400, 'entity.parse.failed'));
    }
    done(undefined, body);
  };
  const cleanup = () => {
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onError);
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
}

/**
 * Makes the server create its requests and responses with Express's prototypes already in
 * their chain, as Express would set them (`setPrototypeOf`), so that they keep shared shapes:
 * V8 gives an object whose prototype was set and that then gets a new property (writeHead's
 * statusCode, `locals`, ...) a hidden class of its own, and with hundreds of streams open every
 * property access in node's response write path then misses V8's inline caches (7% of the
 * gateway's CPU in bench:streams). The classes are node's own options (http.createServer's
 * IncomingMessage and ServerResponse), set on the server Nest created. False when this Node
 * keeps them elsewhere: requests and responses are then given the prototypes one by one.
 */
export function bornWithExpressPrototypes(
  server: Server,
  express: { request: Request; response: Response },
): boolean {
  const slot = (name: string, current: unknown) =>
    Object.getOwnPropertySymbols(server).find(
      (s) => s.description === name && (server as unknown as Record<symbol, unknown>)[s] === current,
    );
  const reqSlot = slot('IncomingMessage', IncomingMessage);
  const resSlot = slot('ServerResponse', ServerResponse);
  if (!reqSlot || !resSlot) return false;
  class HotRequest extends IncomingMessage {}
  class HotResponse extends ServerResponse {}
  Object.setPrototypeOf(HotRequest.prototype, express.request);
  Object.setPrototypeOf(HotResponse.prototype, express.response);
  Object.assign(server, { [reqSlot]: HotRequest, [resSlot]: HotResponse });
  return true;
}

/**
 * The hot path (docs/architecture.md, "How a completion request flows"): the metered
 * completion routes served ahead of Express, the same steps as the Nest pipeline in the
 * same order, with the same services from the Nest container. Everything else, and any
 * request it does not recognise exactly, goes to Express unchanged.
 */
export function installHotPath(app: NestExpressApplication, deps: HotPathDeps): void {
  const express = app.getHttpAdapter().getInstance() as Application &
    ((req: unknown, res: unknown) => void) & { request: Request; response: Response };
  const server = app.getHttpServer() as Server;
  if (!server.listeners('request').includes(express))
    throw new Error('hot path: the HTTP server has no Express request listener to put itself in front of');

  const born = bornWithExpressPrototypes(server, express);
  const completions = app.get(CompletionsService);
  const embeddings = app.get(EmbeddingsService);
  const responses = app.get(ResponsesService);
  const messages = app.get(MessagesService);
  const auth = app.get(AuthService);
  const admission = app.get(KeyAdmission);
  const ctx = app.get(RequestContext);
  const metrics = app.get(MetricsService);
  const openAiErrors = new AllExceptionsFilter();
  const anthropicErrors = new AnthropicExceptionFilter();

  const routes = new Map<string, HotRoute>();
  const add = (paths: string[], r: Omit<HotRoute, 'route'>) => {
    for (const route of paths) routes.set(route, { ...r, route });
  };
  add(['/v1/chat/completions', '/api/v1/chat/completions'], {
    scope: 'chat',
    anthropic: false,
    anyText: true,
    serve: (key, body, _req, res, id) => completions.chat(key!, body, res, id),
  });
  add(['/v1/embeddings', '/api/v1/embeddings'], {
    scope: 'embeddings',
    anthropic: false,
    anyText: false,
    serve: (key, body, _req, res, id) => embeddings.embed(key!, body, res, id),
  });
  add(['/v1/responses', '/api/v1/responses'], {
    scope: 'responses',
    anthropic: false,
    anyText: false,
    serve: (key, body, _req, res, id) => responses.create(key!, body, res, id),
  });
  add(['/v1/messages', '/api/v1/messages'], {
    scope: 'messages',
    anthropic: true,
    anyText: true,
    serve: (key, body, req, res, id) =>
      messages.create(
        key!,
        body,
        {
          version: req.headers['anthropic-version'] as string | undefined,
          beta: req.headers['anthropic-beta'] as string | undefined,
        },
        res,
        id,
      ),
  });

  // The public login route: a credential-stuffing flood is refused here at a fraction of the
  // Nest pipeline's cost (issue 14: completions must barely notice it). AuthController.login's
  // steps: the global ValidationPipe on LoginDto, AuthService.login, 200 with its answer.
  add(['/auth/login'], {
    anthropic: false,
    anyText: false,
    serve: async (_key, body, req, res) => {
      const dto = (await deps.validation.transform(body, { type: 'body', metatype: LoginDto })) as LoginDto;
      const answer = await auth.login(dto.email, dto.password, (req as Request).ip ?? 'unknown', dto.tenant);
      (res as Response).status(200).json(answer);
    },
  });

  const serve = (req: Request, res: Response, hot: HotRoute, id: string, startedAt: number) => {
    const keyReq = req as Request & KeyRequest;
    res.once('close', () =>
      writeAccessLine(PinoLogger.root, res, {
        id,
        method: 'POST',
        path: hot.route,
        route: hot.route,
        // on the request once the key is accepted, even when the scope then refuses it
        principal: keyReq.principal,
        startedAt,
      }),
    );
    ctx
      .run(id, req.ip, async () => {
        try {
          const principal = hot.scope ? await admission.admit(keyReq, clientAddress(req), hot.scope) : null;
          await hot.serve(principal, req.body, req, res, id);
        } catch (e) {
          (hot.anthropic ? anthropicErrors : openAiErrors).respond(e, req, res);
        }
      })
      .catch(() => res.destroy()); // the error answer itself failed: nothing more to say
  };

  const handle = (raw: IncomingMessage, rawRes: ServerResponse) => {
    const url = raw.url ?? '';
    const q = url.indexOf('?');
    const hot = raw.method === 'POST' ? routes.get(q < 0 ? url : url.slice(0, q)) : undefined;
    if (!hot) return express(raw, rawRes);
    const startedAt = Date.now();
    // What Express's app.handle does before its router: the same request and response objects.
    const req = raw as Request;
    const res = rawRes as Response;
    req.res = res;
    res.req = req;
    if (!born) {
      Object.setPrototypeOf(req, express.request);
      Object.setPrototypeOf(res, express.response);
    }
    res.locals ??= Object.create(null) as Response['locals'];
    // setup.ts's middleware, in its order: request id, HTTP metrics, JSON body, body checks.
    const id = requestIdFor(req, res);
    let routed = false;
    trackHttpRequest(metrics, 'POST', res, () => (routed ? hot.route : 'unmatched'));
    const bodyDone = (err: unknown, body?: unknown) => {
      if (body !== undefined) req.body = body;
      const error = err ?? jsonBodyError(req.body, hot.anyText);
      if (error) return deps.answerBodyError(error, req, res);
      routed = true;
      serve(req, res, hot, id, startedAt);
    };
    const length = req.headers['content-length'];
    const type = req.headers['content-type'];
    if (length === undefined && req.headers['transfer-encoding'] === undefined) {
      return bodyDone(undefined); // no body: body-parser leaves req.body undefined
    }
    if (
      length !== undefined &&
      Number(length) <= deps.bodyLimitBytes &&
      req.headers['transfer-encoding'] === undefined &&
      req.headers['content-encoding'] === undefined &&
      type !== undefined &&
      PLAIN_JSON.test(type)
    ) {
      return readJson(req, bodyDone);
    }
    deps.jsonParser(req, res, (err?: unknown) => bodyDone(err));
  };

  server.removeListener('request', express);
  server.on('request', handle);
}
