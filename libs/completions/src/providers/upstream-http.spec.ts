import { PassThrough } from 'node:stream';
import { UpstreamError } from './provider';
import { eventJson, SseHandler, SseStream, UpstreamResponse } from './upstream-http';

type Seen = { data: string; event?: string; bytes?: string };

/** Feeds `chunks` one by one (each its own 'data' event) to an SseStream and collects what it hands on. */
async function read(chunks: string[], handler: Partial<SseHandler<Seen>> = {}) {
  const body = new PassThrough();
  const stream = new SseStream<Seen>(body as unknown as UpstreamResponse['body'], {
    event: (e, push, bytes) => {
      push({ data: e.data, event: e.event, bytes: bytes?.toString() });
    },
    error: (e) => e,
    ...handler,
  });
  const seen: Seen[] = [];
  const done = (async () => {
    for await (const s of stream) seen.push(s);
  })();
  done.catch(() => undefined); // awaited below
  for (const c of chunks) {
    body.write(c);
    await new Promise((r) => setImmediate(r));
  }
  body.end();
  await done;
  return seen;
}

describe('SseStream', () => {
  it('reads plain events with their bytes, and everything else through the parser, in order', async () => {
    const seen = await read([
      'data: {"a":1}\n\ndata: {"b":2}\n\n',
      'data: {"c"', // an event split across chunks
      ':3}\n\n',
      'data: {"d":4}\n\n',
      'event: ping\ndata: x\n\n', // another field
      'data: y\r\n\r\n', // CRLF
      ': comment\n\ndata: two\ndata: lines\n\n',
      'data: {"e":5}\n\n',
      'data: last', // no blank line before the end
    ]);
    expect(seen).toEqual([
      { data: '{"a":1}', bytes: 'data: {"a":1}\n\n' },
      { data: '{"b":2}', bytes: 'data: {"b":2}\n\n' },
      { data: '{"c":3}' },
      { data: '{"d":4}', bytes: 'data: {"d":4}\n\n' },
      { data: 'x', event: 'ping' },
      { data: 'y' },
      { data: 'two\nlines' },
      { data: '{"e":5}', bytes: 'data: {"e":5}\n\n' },
      { data: 'last' },
    ]);
  });

  it('a character split across chunks is decoded whole', async () => {
    const bytes = Buffer.from('data: "é"\n\n');
    const body = new PassThrough();
    const stream = new SseStream<string>(body as unknown as UpstreamResponse['body'], {
      event: (e, push) => push(e.data),
      error: (e) => e,
    });
    body.write(bytes.subarray(0, 8)); // ends inside é
    body.end(bytes.subarray(8));
    const seen: string[] = [];
    for await (const s of stream) seen.push(s);
    expect(seen).toEqual(['"é"']);
  });

  it('an event that completes the stream ends it; an error thrown by the handler comes after the items before it', async () => {
    expect(
      await read(['data: 1\n\ndata: [DONE]\n\ndata: 2\n\n'], {
        event: (e, push) => {
          if (e.data === '[DONE]') return true;
          push({ data: e.data });
        },
      }),
    ).toEqual([{ data: '1' }]);
    await expect(
      read(['data: 1\n\ndata: bad\n\n'], {
        event: (e, push) => {
          if (e.data === 'bad') throw new Error('malformed');
          push({ data: e.data });
        },
      }),
    ).rejects.toThrow('malformed');
  });
});

describe('SseStream.each', () => {
  const stream = (body: PassThrough, handler: Partial<SseHandler<string>> = {}) =>
    new SseStream<string>(body as unknown as UpstreamResponse['body'], {
      event: (e, push) => {
        if (e.data === '[DONE]') return true;
        push(e.data);
      },
      error: (e) => e,
      ...handler,
    });
  const tick = () => new Promise((r) => setImmediate(r));

  it('hands over the item ready() waited for, then each one as it arrives, synchronously', async () => {
    const body = new PassThrough();
    const s = stream(body);
    const ready = s.ready();
    body.write('data: 1\n\ndata: 2\n\n');
    await ready;
    const seen: string[] = [];
    const done = s.each((item) => void seen.push(item));
    expect(seen).toEqual(['1', '2']); // the queued ones, at once
    body.write('data: 3\n\n');
    await tick();
    expect(seen).toEqual(['1', '2', '3']);
    body.end('data: [DONE]\n\n');
    await done;
    expect(body.destroyed).toBe(false); // completed: the body is left to finish (connection reuse)
  });

  it('a pending promise holds the next items and pauses the body; true from it ends the stream', async () => {
    const body = new PassThrough();
    const s = stream(body);
    const seen: string[] = [];
    let release: (end: boolean) => void = () => undefined;
    const done = s.each((item) => {
      seen.push(item);
      if (item === '1') return new Promise<boolean>((r) => (release = r));
    });
    body.write('data: 1\n\ndata: 2\n\n');
    await tick();
    expect(seen).toEqual(['1']);
    expect(body.isPaused()).toBe(true);
    release(false);
    await tick();
    expect(seen).toEqual(['1', '2']);
    expect(body.isPaused()).toBe(false);
    body.write('data: 3\n\ndata: 4\n\n');
    await tick();
    expect(seen).toEqual(['1', '2', '3', '4']);
    // true ends it: the body is dropped, nothing more is read
    const body3 = new PassThrough();
    const seen3: string[] = [];
    const done3 = stream(body3).each((item) => {
      seen3.push(item);
      return item === 'b' ? Promise.resolve(true) : undefined;
    });
    body3.write('data: a\n\ndata: b\n\ndata: c\n\n');
    await done3;
    expect(seen3).toEqual(['a', 'b']);
    expect(body3.destroyed).toBe(true);
    body.end('data: [DONE]\n\n');
    await done;
  });

  it('a failure comes after the items before it; what the callback throws ends the stream with it', async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const s = stream(body, {
      event: (e, push) => {
        if (e.data === 'bad') throw new Error('malformed');
        push(e.data);
      },
    });
    let release: () => void = () => undefined;
    const done = s.each((item) => {
      seen.push(item);
      if (item === '1') return new Promise<void>((r) => (release = r));
    });
    body.write('data: 1\n\ndata: 2\n\ndata: bad\n\n');
    await tick();
    expect(seen).toEqual(['1']);
    release();
    await expect(done).rejects.toThrow('malformed');
    expect(seen).toEqual(['1', '2']);

    const body2 = new PassThrough();
    const done2 = stream(body2).each((item) => {
      if (item === 'x') throw new Error('client gone');
    });
    body2.write('data: ok\n\ndata: x\n\ndata: never\n\n');
    await expect(done2).rejects.toThrow('client gone');
    expect(body2.destroyed).toBe(true);
  });

  it('ready() rejects with a failure before any item; resolves at an end without one', async () => {
    const body = new PassThrough();
    const failed = stream(body).ready();
    body.destroy(new Error('reset'));
    await expect(failed).rejects.toThrow('reset');
    const body2 = new PassThrough();
    const s = stream(body2);
    const ready = s.ready();
    body2.end('data: [DONE]\n\n');
    await ready;
    const seen: string[] = [];
    await s.each((item) => void seen.push(item));
    expect(seen).toEqual([]);
  });
});

describe('eventJson', () => {
  it("an event's JSON data, or a 502 (not retried) naming the upstream", () => {
    expect(eventJson<{ a: number }>('{"a":1}', 'The x upstream')).toEqual({ a: 1 });
    expect(() => eventJson('{"a":', 'The x upstream of d1', 'chunk')).toThrow(
      'The x upstream of d1 sent a malformed chunk',
    );
    let thrown: unknown;
    try {
      eventJson('nope', 'The x upstream');
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(UpstreamError);
    expect((thrown as UpstreamError).kind).toBe('final');
    expect((thrown as UpstreamError).apiError.getStatus()).toBe(502);
    expect((thrown as Error).message).toBe('The x upstream sent a malformed event');
  });
});
