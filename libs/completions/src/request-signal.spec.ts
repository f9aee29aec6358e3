import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { request } from 'undici';
import { RequestSignal } from './request-signal';

describe('RequestSignal (the exchange abort signal)', () => {
  it('aborts once, with its reason, and calls each listener once', () => {
    const s = new RequestSignal();
    const seen: unknown[] = [];
    s.addEventListener('abort', () => seen.push(s.reason), { once: true });
    s.onabort = () => seen.push('onabort');
    expect(s.aborted).toBe(false);
    expect(() => s.throwIfAborted()).not.toThrow();
    const reason = new Error('client left');
    s.abort(reason);
    s.abort(new Error('later'));
    expect(s.aborted).toBe(true);
    expect(s.reason).toBe(reason);
    expect(seen).toEqual(['onabort', reason]);
    expect(() => s.throwIfAborted()).toThrow('client left');
  });

  it('defaults to an AbortError', () => {
    const s = new RequestSignal();
    s.abort();
    expect((s.reason as DOMException).name).toBe('AbortError');
  });

  it("is accepted by node's events.once and ends it", async () => {
    const s = new RequestSignal();
    const emitter = new (await import('node:events')).EventEmitter();
    const waiting = once(emitter, 'never', { signal: s.asSignal });
    s.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow();
  });

  describe('with undici (the upstream client)', () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      // answers headers and then nothing: the call waits until it is aborted
      server = createServer((_req, res) => res.writeHead(200).flushHeaders());
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it('cuts a call in flight with its reason', async () => {
      const s = new RequestSignal();
      const call = request(url, { signal: s.asSignal }).then((r) => r.body.text());
      setTimeout(() => s.abort(new Error('timeout here')), 50);
      await expect(call).rejects.toThrow('timeout here');
    });

    it('refuses to start when already aborted', async () => {
      const s = new RequestSignal();
      s.abort(new Error('before'));
      await expect(request(url, { signal: s.asSignal })).rejects.toThrow('before');
    });
  });
});
