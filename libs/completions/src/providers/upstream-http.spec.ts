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
