import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ApiError, defaultErrorType, ErrorBody } from './api-error';

function requestIdOf(req: Request | undefined): string | undefined {
  const id = (req as unknown as { id?: unknown })?.id ?? req?.headers?.['x-request-id'];
  return typeof id === 'string' ? id : undefined;
}

/** Turns anything thrown into the one error body; unexpected errors become a plain 500 with the request id. */
export function toErrorResponse(
  exception: unknown,
  req?: Request,
): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const requestId = requestIdOf(req);
  if (exception instanceof ApiError) {
    return { status: exception.getStatus(), body: exception.toBody(requestId), headers: exception.headers };
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const [type, code] = defaultErrorType(status);
    const res = exception.getResponse();
    let message = exception.message;
    if (typeof res === 'object' && res && 'message' in res) {
      const m = (res as { message: unknown }).message;
      message = Array.isArray(m) ? m.join('; ') : String(m);
    }
    if (status === 404 && /^Cannot (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)/.test(message)) {
      message = `Unknown route: ${message.replace(/^Cannot /, '')}`;
    }
    return {
      status,
      body: { error: { message, type, code, param: null, ...(requestId ? { request_id: requestId } : {}) } },
      headers: {},
    };
  }
  // body-parser and other http-errors style exceptions carry a 4xx status of their own
  const e = exception as { status?: number; statusCode?: number; type?: string; expose?: boolean };
  const st = e?.status ?? e?.statusCode;
  if (typeof st === 'number' && st >= 400 && st < 500) {
    const messages: Record<string, string> = {
      'entity.parse.failed': 'Request body is not valid JSON',
      'entity.too.large': 'Request body is too large',
      'encoding.unsupported': 'Unsupported content encoding',
      'charset.unsupported': 'Unsupported charset',
      'request.aborted': 'Request aborted',
      'entity.verify.failed': 'Request body could not be verified',
    };
    const [type, code] = defaultErrorType(st);
    const message = messages[e.type ?? ''] ?? 'Bad request';
    return {
      status: st,
      body: {
        error: {
          message,
          type,
          code: e.type === 'entity.parse.failed' ? 'invalid_json' : code,
          param: null,
          ...(requestId ? { request_id: requestId } : {}),
        },
      },
      headers: {},
    };
  }
  return {
    status: 500,
    body: {
      error: {
        message: `Internal error${requestId ? ` (request id ${requestId})` : ''}`,
        type: 'server_error',
        code: 'internal_error',
        param: null,
        ...(requestId ? { request_id: requestId } : {}),
      },
    },
    headers: {},
  };
}

/** One error body for every error (novu's AllExceptionsFilter idea); stack traces only in the log. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    this.respond(exception, ctx.getRequest<Request>(), ctx.getResponse<Response>());
  }

  /** The answer to `exception` on `res` (Nest calls it through `catch`, the gateway's hot path directly). */
  respond(exception: unknown, req: Request, res: Response): void {
    const { status, body, headers } = toErrorResponse(exception, req);
    if (status >= 500 && !(exception instanceof HttpException)) {
      this.logger.error({ err: exception, requestId: body.error.request_id }, 'unhandled error');
    }
    if (res.headersSent) {
      // A stream already started: the streaming code reports errors in-band; just end it.
      if (!res.writableEnded) res.end();
      return;
    }
    this.render(res, status, body, headers);
  }

  /** Writes the error: this shape for every route but those with a format of their own. */
  protected render(res: Response, status: number, body: ErrorBody, headers: Record<string, string>): void {
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.status(status).json(body);
  }
}
