import { PassThrough } from 'node:stream';
import { answerClientError, jsonBodyError, jsonBodyProblem, MAX_JSON_DEPTH } from './request-guards';

const nest = (depth: number) => JSON.parse('['.repeat(depth) + ']'.repeat(depth));

describe('jsonBodyProblem', () => {
  const opts = { maxDepth: MAX_JSON_DEPTH, anyText: false };

  it('accepts ordinary bodies, refuses nesting beyond the limit without recursing', () => {
    expect(jsonBodyProblem({ a: [{ b: 'c' }], n: 1, x: null }, opts)).toBeNull();
    expect(jsonBodyProblem(nest(MAX_JSON_DEPTH), opts)).toBeNull();
    expect(jsonBodyProblem(nest(MAX_JSON_DEPTH + 1), opts)).toMatch(/nested more than 64 levels/);
    expect(jsonBodyProblem(nest(100_000), opts)).toMatch(/nested/);
    expect(jsonBodyProblem(JSON.parse('{"a":'.repeat(3000) + '1' + '}'.repeat(3000)), opts)).toMatch(
      /nested/,
    );
  });

  it('refuses NUL and lone surrogates in strings and keys, unless any text goes (the chat route: upstream only)', () => {
    expect(jsonBodyProblem({ email: 'a\u0000@x' }, opts)).toMatch(/NUL/);
    expect(jsonBodyProblem({ ['k\u0000']: 1 }, opts)).toMatch(/NUL/);
    expect(jsonBodyProblem(['ok', ['x\u0000']], opts)).toMatch(/NUL/);
    expect(jsonBodyProblem({ email: 'a\ud800@x.test' }, opts)).toMatch(/lone UTF-16 surrogate/);
    expect(jsonBodyProblem({ name: 'x\udc00' }, opts)).toMatch(/lone/);
    expect(jsonBodyProblem({ name: 'emoji \ud83d\ude00 ok' }, opts)).toBeNull();
    expect(jsonBodyProblem({ content: 'a\u0000\ud800' }, { ...opts, anyText: true })).toBeNull();
    expect(jsonBodyProblem(undefined, opts)).toBeNull();
  });

  it('as an ApiError: 400 invalid_json', () => {
    const e = jsonBodyError(nest(200), false)!;
    expect([e.getStatus(), e.code, e.type]).toEqual([400, 'invalid_json', 'invalid_request_error']);
    expect(jsonBodyError({ a: 1 }, false)).toBeUndefined();
  });
});

describe('answerClientError', () => {
  const answer = (code: string) => {
    const socket = new PassThrough();
    let out = '';
    socket.on('data', (c: Buffer) => (out += c.toString()));
    answerClientError(Object.assign(new Error(code), { code }), socket);
    return out;
  };

  it('answers the parser refusals in the error envelope and closes', () => {
    const big = answer('HPE_HEADER_OVERFLOW');
    expect(big).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(big).toMatch(/Connection: close/);
    expect(JSON.parse(big.split('\r\n\r\n')[1]).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'headers_too_large',
    });
    expect(answer('HPE_INVALID_METHOD')).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*"malformed_request"/);
    expect(answer('ERR_HTTP_REQUEST_TIMEOUT')).toMatch(/^HTTP\/1\.1 408 /);
  });
});
