import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { ApiError, defaultErrorType } from './api-error';

/** Deeper JSON has no use here, and class-transformer recurses on it (a stack overflow was a 500). */
export const MAX_JSON_DEPTH = 64;

/**
 * Why a parsed JSON body is refused, or null. Walks the value iteratively (so the check
 * itself cannot overflow the stack):
 * - nesting deeper than `maxDepth` (found by the reliability suite: 3000 levels made
 *   class-transformer overflow the stack, a 500 on every admin route);
 * - unless `anyText`, a string or key PostgreSQL or the validators cannot take: a NUL
 *   character (PostgreSQL text cannot hold it: "invalid byte sequence", a 500 on
 *   /auth/login and the admin routes) or a lone surrogate, which is not Unicode
 *   (class-validator's IsEmail threw URIError on it: a 500).
 */
export function jsonBodyProblem(body: unknown, opts: { maxDepth: number; anyText: boolean }): string | null {
  if (body === null || typeof body !== 'object') {
    return typeof body === 'string' && !opts.anyText ? textProblem(body) : null;
  }
  const stack: [unknown, number][] = [[body, 1]];
  while (stack.length) {
    const [value, depth] = stack.pop()!;
    if (typeof value === 'string') {
      const bad = opts.anyText ? null : textProblem(value);
      if (bad) return bad;
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth > opts.maxDepth) return `Request body is nested more than ${opts.maxDepth} levels deep`;
    if (Array.isArray(value)) {
      for (const v of value) stack.push([v, depth + 1]);
    } else {
      for (const [k, v] of Object.entries(value)) {
        const bad = opts.anyText ? null : textProblem(k);
        if (bad) return bad;
        stack.push([v, depth + 1]);
      }
    }
  }
  return null;
}
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function textProblem(s: string): string | null {
  if (s.includes('\u0000')) return 'Request body contains a NUL character (\\u0000), which is not accepted';
  if (LONE_SURROGATE.test(s))
    return 'Request body contains a lone UTF-16 surrogate, which is not Unicode text';
  return null;
}

/** The same check as an ApiError (400 invalid_json), or undefined. */
export function jsonBodyError(body: unknown, anyText: boolean): ApiError | undefined {
  const problem = jsonBodyProblem(body, { maxDepth: MAX_JSON_DEPTH, anyText });
  return problem ? ApiError.badRequest(problem, 'invalid_json') : undefined;
}

/**
 * The http server's `clientError` listener: requests Node's parser refuses before any
 * handler runs (headers over 16 KB, a space or control character in the request line,
 * a bad header) get the error envelope instead of Node's bare `400 Bad Request` with an
 * empty body, then the connection is closed (Node's rule for this event).
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const message =
    status === 431
      ? 'Request headers are too large'
      : status === 408
        ? 'Request timed out before it was complete'
        : 'Malformed HTTP request';
  const [type] = defaultErrorType(status);
  const body = JSON.stringify({
    error: {
      message,
      type,
      code: status === 431 ? 'headers_too_large' : status === 408 ? 'request_timeout' : 'malformed_request',
      param: null,
    },
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
