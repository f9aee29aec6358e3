import express from 'express';
import { createServer, request, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { bornWithExpressPrototypes } from './hot-path';

// V8's own view of two objects' hidden classes (natives syntax, compiled after the flag is set)
setFlagsFromString('--allow-natives-syntax');
const sameShape = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

/**
 * Two requests held open at once, each answered as the hot path does (its prototypes, then
 * writeHead and a chunk); whether the two responses share V8's hidden class at that point.
 */
async function twoResponses(born: boolean): Promise<{ shared: boolean; express: boolean }> {
  const app = express();
  const held: ServerResponse[] = [];
  const server = createServer();
  if (born) expect(bornWithExpressPrototypes(server, app)).toBe(true);
  let result: { shared: boolean; express: boolean } | undefined;
  server.on('request', (req, res: ServerResponse) => {
    if (!born) {
      Object.setPrototypeOf(req, app.request);
      Object.setPrototypeOf(res, app.response);
    }
    (res as unknown as { locals: object }).locals ??= Object.create(null) as object;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: 1\n\n');
    held.push(res);
    if (held.length === 2) {
      result = {
        shared: sameShape(held[0], held[1]),
        express: held.every((r) => Object.prototype.isPrototypeOf.call(app.response, r)),
      };
      for (const r of held) r.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const get = () =>
    new Promise<void>((resolve, reject) =>
      request({ port, host: '127.0.0.1', agent: false }, (res) => res.resume().on('end', resolve))
        .on('error', reject)
        .end(),
    );
  await Promise.all([get(), get()]);
  await new Promise((r) => server.close(r));
  return result!;
}

describe('bornWithExpressPrototypes', () => {
  it("responses born with Express's prototypes share one hidden class; given them one by one, each has its own", async () => {
    expect(await twoResponses(true)).toEqual({ shared: true, express: true });
    expect(await twoResponses(false)).toEqual({ shared: false, express: true });
  });
});
