import { HttpException } from '@nestjs/common';

/** OpenAI's error body: `{ "error": { "message", "type", "code" } }`. */
export interface ErrorBody {
  error: { message: string; type: string; code: string | null; param?: string | null; request_id?: string };
}

const DEFAULT_TYPE: Record<number, [type: string, code: string]> = {
  400: ['invalid_request_error', 'bad_request'],
  401: ['authentication_error', 'unauthorized'],
  403: ['permission_error', 'forbidden'],
  404: ['invalid_request_error', 'not_found'],
  405: ['invalid_request_error', 'method_not_allowed'],
  409: ['invalid_request_error', 'conflict'],
  413: ['invalid_request_error', 'payload_too_large'],
  415: ['invalid_request_error', 'unsupported_media_type'],
  422: ['invalid_request_error', 'unprocessable_entity'],
  429: ['rate_limit_exceeded', 'rate_limit_exceeded'],
  500: ['server_error', 'internal_error'],
  502: ['server_error', 'bad_gateway'],
  503: ['server_error', 'service_unavailable'],
  504: ['server_error', 'gateway_timeout'],
};

export function defaultErrorType(status: number): [string, string] {
  return (
    DEFAULT_TYPE[status] ?? (status >= 500 ? ['server_error', 'error'] : ['invalid_request_error', 'error'])
  );
}

/**
 * An error the gateway means to show: status, OpenAI `type` and `code`, a message,
 * and optional response headers (Retry-After, x-ratelimit-*).
 */
export class ApiError extends HttpException {
  constructor(
    status: number,
    message: string,
    readonly type: string = defaultErrorType(status)[0],
    readonly code: string = defaultErrorType(status)[1],
    readonly headers: Record<string, string> = {},
    readonly param: string | null = null,
  ) {
    super({ message, type, code }, status);
  }

  static badRequest(message: string, code = 'bad_request', param: string | null = null) {
    return new ApiError(400, message, 'invalid_request_error', code, {}, param);
  }
  static unauthorized(message: string, code = 'unauthorized') {
    return new ApiError(401, message, 'authentication_error', code);
  }
  static forbidden(message: string, code = 'forbidden') {
    return new ApiError(403, message, 'permission_error', code);
  }
  static notFound(message: string, code = 'not_found') {
    return new ApiError(404, message, 'invalid_request_error', code);
  }
  static conflict(message: string, code = 'conflict') {
    return new ApiError(409, message, 'invalid_request_error', code);
  }

  toBody(requestId?: string): ErrorBody {
    return {
      error: {
        message: this.message,
        type: this.type,
        code: this.code,
        param: this.param,
        ...(requestId ? { request_id: requestId } : {}),
      },
    };
  }
}
