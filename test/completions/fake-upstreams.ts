import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Fake LLM upstreams: real HTTP servers on 127.0.0.1. What they do is chosen by the
 * upstream model name in the request, so one routing table can point several models at one
 * server (see MODELS below).
 */
export interface RecordedRequest {
  /** Bytes of answer written so far (the `flood` model). */
  written: number;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, any>;
  /** The body exactly as received. */
  raw: string;
  /** The client went away before the answer was complete. */
  aborted: boolean;
  finished: boolean;
  /** The client's port: requests with the same port came over the same (kept-alive) connection. */
  port: number;
}

export interface FakeUpstream {
  url: string;
  requests: RecordedRequest[];
  /** Resolves once a request for `model` saw its client go away. */
  abortedFor(model: string, timeoutMs?: number): Promise<RecordedRequest>;
  close(): Promise<void>;
}

export const FAKE_TEXT = 'Hello from the fake upstream, word by word.';
export const FAKE_USAGE = { prompt_tokens: 21, completion_tokens: 9 };

type Handler = (req: RecordedRequest, res: ServerResponse) => void;

export async function serve(handler: Handler, port = 0): Promise<FakeUpstream> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const rec: RecordedRequest = {
        written: 0,
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: raw ? JSON.parse(raw) : {},
        raw,
        aborted: false,
        finished: false,
        port: req.socket.remotePort ?? 0,
      };
      requests.push(rec);
      res.on('finish', () => (rec.finished = true));
      res.on('close', () => {
        if (!rec.finished) rec.aborted = true;
      });
      handler(rec, res);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    requests,
    async abortedFor(model, timeoutMs = 3000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const r = requests.find((x) => x.body.model === model && x.aborted);
        if (r) return r;
        if (Date.now() > until) throw new Error(`no aborted request for ${model}`);
        await new Promise((res) => setTimeout(res, 10));
      }
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const sse = (res: ServerResponse, data: unknown) =>
  res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
const words = (text: string) => text.match(/\s*\S+\s*/g) ?? [];
const every = (ms: number, n: number, fn: (i: number) => boolean | void, done: () => void) => {
  let i = 0;
  const t = setInterval(() => {
    if (i >= n || fn(i++) === false) {
      clearInterval(t);
      if (i >= n) done();
    }
  }, ms);
  return t;
};

/**
 * OpenAI Chat Completions. Models: `echo` (answer + usage), `no-usage`, `fail-503`,
 * `fail-400`, `fail-429`, `fail-401`, `hang`, `slow-stream`, `die-mid-stream`,
 * `hang-mid-stream`, `paced-stream` (the echo answer, a word every 5 ms; the body ends 5 ms after [DONE]), `ignores-stream-options`, `flood` (50 MB of chunks as fast as the
 * connection takes them), `runaway` (ignores its cap: 5,000 tokens), `accept-then-hang`
 * (200 and headers, then no body: unstreamed only); for routing: `late-<ms>` (answers, or
 * starts its stream, after <ms>), `ratelimit-<s>` (429 with Retry-After: <s>), `flaky-<n>`
 * (503 to the first <n> requests of this server, then answers), `die-before-first` (200,
 * then the connection drops before any chunk).
 */
export function fakeOpenAi(): Promise<FakeUpstream> {
  return serve(openAiHandler());
}

/** A fake upstream whose behaviour can change: `ok` (the fakeOpenAi models), `hang`, or `down` (refuses connections). */
export interface SwitchableUpstream {
  url: string;
  requests: RecordedRequest[];
  set(mode: 'ok' | 'hang' | 'down'): Promise<void>;
  close(): Promise<void>;
}

export async function switchableUpstream(): Promise<SwitchableUpstream> {
  const handler = openAiHandler();
  let mode: 'ok' | 'hang' | 'down' = 'ok';
  const requests: RecordedRequest[] = [];
  const wrapped: Handler = (rec, res) => {
    requests.push(rec);
    if (mode !== 'hang') handler(rec, res);
  };
  let up: FakeUpstream | undefined = await serve(wrapped);
  const url = up.url;
  const port = Number(new URL(url).port);
  return {
    url,
    requests,
    async set(next) {
      mode = next;
      if (next === 'down' && up) {
        await up.close();
        up = undefined;
      } else if (next !== 'down' && !up) {
        up = await serve(wrapped, port);
      }
    },
    async close() {
      await up?.close();
      up = undefined;
    },
  };
}

function openAiHandler(): Handler {
  const served = new Map<string, number>();
  return (rec, res) => {
    if (rec.path.endsWith('/embeddings')) return fakeEmbeddings(rec, res);
    if (rec.path.includes('/responses')) return fakeResponses(rec, res);
    const model: string = rec.body.model;
    served.set(model, (served.get(model) ?? 0) + 1);
    const late = /^late-(\d+)$/.exec(model);
    if (late) {
      const t = setTimeout(
        () => openAiAnswer({ ...rec, body: { ...rec.body, model: 'echo' } }, res),
        Number(late[1]),
      );
      res.on('close', () => clearTimeout(t));
      return;
    }
    const limited = /^ratelimit-(\d+)$/.exec(model);
    if (limited) {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': limited[1] });
      res.end(
        JSON.stringify({
          error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' },
        }),
      );
      return;
    }
    const flaky = /^flaky-(\d+)$/.exec(model);
    if (flaky && served.get(model)! <= Number(flaky[1])) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } }));
      return;
    }
    if (model === 'die-before-first') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    openAiAnswer(rec, res);
  };
}

function openAiAnswer(rec: RecordedRequest, res: ServerResponse): void {
  {
    const model: string = /^flaky-/.test(rec.body.model) ? 'echo' : rec.body.model;
    const id = 'chatcmpl-fake';
    const error = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    switch (model) {
      case 'fail-503':
        return error(503, { error: { message: 'overloaded', type: 'server_error' } });
      case 'fail-400':
        return error(400, {
          error: {
            message: "This model's maximum context length is 8 tokens",
            type: 'invalid_request_error',
            code: 'context_length_exceeded',
            param: 'messages',
          },
        });
      case 'fail-429':
        return error(
          429,
          { error: { message: 'Slow down', type: 'requests', code: 'rate_limit_exceeded' } },
          { 'retry-after': '7' },
        );
      case 'fail-401':
        return error(401, {
          error: { message: 'Incorrect API key provided: sk-up****cret', type: 'invalid_request_error' },
        });
      case 'hang':
        return; // never answers
      case 'accept-then-hang':
        // accepted (200 and headers), then the body never comes: a long generation that times out
        if (!rec.body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.flushHeaders();
          return;
        }
        break;
    }
    const withUsage = model !== 'no-usage' && model !== 'ignores-stream-options';
    // `runaway` ignores the cap it was sent: 5,000 tokens (one " go" each)
    const runaway = model === 'runaway';
    const usage: Record<string, unknown> = runaway
      ? { prompt_tokens: 10, completion_tokens: 5000, total_tokens: 5010 }
      : {
          ...FAKE_USAGE,
          total_tokens: FAKE_USAGE.prompt_tokens + FAKE_USAGE.completion_tokens,
          ...(model === 'cached' ? { prompt_tokens_details: { cached_tokens: FAKE_CACHED_TOKENS } } : {}),
        };
    const msgs = rec.body.messages as { role: string }[] | undefined;
    if (model === 'tool-caller' && rec.body.tools?.length && msgs?.[msgs.length - 1]?.role !== 'tool')
      return toolCall(rec, res, rec.body.tools[0].function.name, usage);
    if (!rec.body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          object: 'chat.completion',
          created: 1,
          model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: runaway ? ' go'.repeat(5000) : FAKE_TEXT },
              finish_reason: 'stop',
              logprobs: null,
            },
          ],
          ...(withUsage ? { usage } : {}),
          system_fingerprint: 'fp_fake',
        }),
      );
      return;
    }
    const asked = rec.body.stream_options?.include_usage === true && model !== 'ignores-stream-options';
    const chunk = (delta: object, finish: string | null = null) => ({
      id,
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      ...(asked ? { usage: null } : {}),
    });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    sse(res, chunk({ role: 'assistant', content: '' }));
    const parts = words(FAKE_TEXT);
    const finish = () => {
      sse(res, chunk({}, 'stop'));
      if (asked && withUsage)
        sse(res, { id, object: 'chat.completion.chunk', created: 1, model, choices: [], usage });
      sse(res, '[DONE]');
      res.end();
    };
    if (model === 'slow-stream') {
      const t = every(
        30,
        1000,
        (i) => (res.destroyed ? false : void sse(res, chunk({ content: `w${i} ` }))),
        finish,
      );
      res.on('close', () => clearInterval(t));
      return;
    }
    if (model === 'paced-stream') {
      // the echo answer a word every 5 ms, then [DONE], and the body's end 5 ms after it
      const t = every(
        5,
        parts.length,
        (i) => (res.destroyed ? false : void sse(res, chunk({ content: parts[i] }))),
        () => {
          sse(res, chunk({}, 'stop'));
          sse(res, '[DONE]');
          setTimeout(() => res.end(), 5);
        },
      );
      res.on('close', () => clearInterval(t));
      return;
    }
    if (model === 'flood') {
      const line = `data: ${JSON.stringify(chunk({ content: 'x'.repeat(4000) }))}\n\n`;
      const pump = () => {
        while (!res.destroyed && rec.written < 50 * 1024 * 1024) {
          rec.written += line.length;
          if (!res.write(line)) return void res.once('drain', pump);
        }
        if (!res.destroyed) finish();
      };
      pump();
      return;
    }
    if (model === 'die-mid-stream') {
      for (const p of parts.slice(0, 3)) sse(res, chunk({ content: p }));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    if (model === 'runaway') {
      let i = 0;
      const pump = () => {
        while (!res.destroyed && i < 5000) {
          i++;
          if (!sse(res, chunk({ content: ' go' }))) return void res.once('drain', pump);
        }
        if (!res.destroyed) {
          rec.written = i;
          sse(res, chunk({}, 'stop'));
          if (asked)
            sse(res, {
              id,
              object: 'chat.completion.chunk',
              created: 1,
              model,
              choices: [],
              usage,
            });
          sse(res, '[DONE]');
          res.end();
        }
      };
      pump();
      return;
    }
    if (model === 'hang-mid-stream') {
      for (const p of parts.slice(0, 2)) sse(res, chunk({ content: p }));
      return;
    }
    for (const p of parts) sse(res, chunk({ content: p }));
    finish();
  }
}

/** Prompt tokens the `cached` model reports as read from the cache. */
export const FAKE_CACHED_TOKENS = 5;
export const FAKE_TOOL_ARGS = '{"city":"Paris"}';

/** The `tool-caller` model's answer while the conversation has no tool result yet. */
function toolCall(rec: RecordedRequest, res: ServerResponse, name: string, usage: object): void {
  const id = 'chatcmpl-tool';
  const call = { id: 'call_1', type: 'function', function: { name, arguments: FAKE_TOOL_ARGS } };
  if (!rec.body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created: 1,
        model: rec.body.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: null, tool_calls: [call] },
            finish_reason: 'tool_calls',
          },
        ],
        usage,
      }),
    );
    return;
  }
  const chunk = (delta: object, finish: string | null = null) => ({
    id,
    object: 'chat.completion.chunk',
    created: 1,
    model: rec.body.model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  sse(res, chunk({ role: 'assistant', content: null }));
  sse(res, chunk({ tool_calls: [{ index: 0, ...call, function: { name, arguments: '' } }] }));
  sse(res, chunk({ tool_calls: [{ index: 0, function: { arguments: FAKE_TOOL_ARGS.slice(0, 8) } }] }));
  sse(res, chunk({ tool_calls: [{ index: 0, function: { arguments: FAKE_TOOL_ARGS.slice(8) } }] }));
  sse(res, chunk({}, 'tool_calls'));
  sse(res, { id, object: 'chat.completion.chunk', created: 1, model: rec.body.model, choices: [], usage });
  sse(res, '[DONE]');
  res.end();
}

/** Tokens the fake reports per embeddings input (whatever the text): the ledger must show exactly this. */
export const FAKE_EMBEDDING_TOKENS_PER_INPUT = 7;
export const FAKE_EMBEDDING_DIMENSIONS = 8;

/** OpenAI embeddings: vector i is [i, i+1, ...]/10 (or base64 float32 when asked); fail-400 for model `embed-bad`. */
function fakeEmbeddings(rec: RecordedRequest, res: ServerResponse): void {
  const { model, input, encoding_format: format, dimensions } = rec.body;
  if (model === 'embed-bad') {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'bad input', type: 'invalid_request_error', code: 'bad' } }));
    return;
  }
  const inputs: unknown[] = typeof input === 'string' || typeof input?.[0] === 'number' ? [input] : input;
  const dims = dimensions ?? FAKE_EMBEDDING_DIMENSIONS;
  const data = inputs.map((_, index) => {
    const v = Array.from({ length: dims }, (_x, j) => (index + j) / 10);
    return {
      object: 'embedding',
      index,
      embedding: format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v,
    };
  });
  const tokens = inputs.length * FAKE_EMBEDDING_TOKENS_PER_INPUT;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({ object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } }),
  );
}

export const FAKE_RESPONSE_TEXT = 'A response from the fake upstream.';
/** What the fake reports for every response: the ledger must show exactly input and output. */
export const FAKE_RESPONSE_USAGE = {
  input_tokens: 23,
  input_tokens_details: { cached_tokens: 3 },
  output_tokens: 11,
  output_tokens_details: { reasoning_tokens: 2 },
  total_tokens: 34,
};
const fakeStored = new Map<string, Record<string, unknown>>();
let fakeResponseCount = 0;

/**
 * OpenAI Responses: POST /responses (model `resp-fake`; `resp-bad` answers 400), streamed or
 * not; GET and DELETE /responses/{id} of what it made; POST .../cancel answers 400 (not background).
 */
function fakeResponses(rec: RecordedRequest, res: ServerResponse): void {
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const m = /\/responses\/([^/?]+)(\/cancel)?/.exec(rec.path);
  if (m) {
    const found = fakeStored.get(m[1]);
    const missing = {
      error: {
        message: `No response found with id '${m[1]}'.`,
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    };
    if (!found) return json(404, missing);
    if (m[2])
      return json(400, {
        error: {
          message: 'Cannot cancel a synchronous response.',
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      });
    if (rec.method === 'DELETE') {
      fakeStored.delete(m[1]);
      return json(200, { id: m[1], object: 'response.deleted', deleted: true });
    }
    return json(200, found);
  }
  const { model, stream } = rec.body;
  if (model === 'resp-bad')
    return json(400, {
      error: { message: 'Unsupported parameter', type: 'invalid_request_error', param: 'input', code: null },
    });
  const id = `resp_fake${++fakeResponseCount}${Date.now()}`;
  const msgId = `msg_fake${fakeResponseCount}`;
  const message = {
    type: 'message',
    id: msgId,
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text: FAKE_RESPONSE_TEXT, annotations: [] }],
  };
  const response = {
    id,
    object: 'response',
    created_at: 1700000000,
    status: 'completed',
    error: null,
    incomplete_details: null,
    model,
    output: [message],
    max_output_tokens: rec.body.max_output_tokens ?? null,
    previous_response_id: rec.body.previous_response_id ?? null,
    usage: FAKE_RESPONSE_USAGE,
  };
  if (rec.body.store !== false) fakeStored.set(id, response);
  if (!stream) return json(200, response);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let seq = 0;
  const ev = (type: string, fields: object) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...fields })}\n\n`);
  const pending = { ...response, status: 'in_progress', output: [], usage: null };
  ev('response.created', { response: pending });
  ev('response.in_progress', { response: pending });
  ev('response.output_item.added', {
    output_index: 0,
    item: { ...message, status: 'in_progress', content: [] },
  });
  const at = { item_id: msgId, output_index: 0, content_index: 0 };
  ev('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } });
  for (const w of words(FAKE_RESPONSE_TEXT)) ev('response.output_text.delta', { ...at, delta: w });
  if (model === 'resp-die-mid-stream') return void setTimeout(() => res.socket?.destroy(), 20);
  ev('response.output_text.done', { ...at, text: FAKE_RESPONSE_TEXT });
  ev('response.content_part.done', { ...at, part: message.content[0] });
  ev('response.output_item.done', { output_index: 0, item: message });
  ev('response.completed', { response });
  res.end();
}

export const ANTHROPIC_TEXT = 'Bonjour from the fake Claude.';
export const ANTHROPIC_USAGE = { input_tokens: 17, output_tokens: 8 };
/** The `claude-cache` model's usage: prompt caching at work. */
export const ANTHROPIC_CACHE_USAGE = {
  input_tokens: 17,
  cache_creation_input_tokens: 1000,
  cache_read_input_tokens: 20000,
  output_tokens: 8,
};
/** What the fake answers on /v1/messages/count_tokens. */
export const ANTHROPIC_COUNT = 4242;

/**
 * Anthropic Messages. Models: `claude-fake` (text), `claude-tools` (a tool_use answer),
 * `claude-overloaded` (529), `claude-bad` (400), `claude-error-mid-stream`, `claude-runaway`
 * (ignores its max_tokens: streams 5,000 tokens, one " go" each).
 */
export function fakeAnthropic(): Promise<FakeUpstream> {
  return serve((rec, res) => {
    const model: string = rec.body.model;
    if (rec.path === '/v1/messages/count_tokens') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: ANTHROPIC_COUNT }));
      return;
    }
    if (model === 'claude-overloaded' || model === 'claude-bad') {
      const [status, type, message] =
        model === 'claude-bad'
          ? [400, 'invalid_request_error', 'messages: roles must alternate']
          : [529, 'overloaded_error', 'Overloaded'];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type, message } }));
      return;
    }
    const msgs = (rec.body.messages ?? []) as { content: unknown }[];
    const last = msgs[msgs.length - 1]?.content;
    const answered = Array.isArray(last) && last.some((b: { type?: string }) => b.type === 'tool_result');
    const tools = model === 'claude-tools' && !answered;
    const usage = model === 'claude-cache' ? ANTHROPIC_CACHE_USAGE : ANTHROPIC_USAGE;
    const content = tools
      ? [
          { type: 'text', text: 'Let me look.' },
          { type: 'tool_use', id: 'toolu_01', name: 'weather', input: { city: 'Paris' } },
        ]
      : [{ type: 'text', text: ANTHROPIC_TEXT }];
    const stop = tools ? 'tool_use' : 'end_turn';
    if (!rec.body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'msg_fake',
          type: 'message',
          role: 'assistant',
          model,
          content,
          stop_reason: stop,
          stop_sequence: null,
          usage,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (event: string, data: object) =>
      res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`);
    ev('message_start', {
      message: {
        id: 'msg_fake',
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        usage: { ...usage, output_tokens: 1 },
      },
    });
    ev('ping', {});
    ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    if (model === 'claude-slow') {
      const t = every(
        30,
        1000,
        (i) =>
          res.destroyed
            ? false
            : void ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `w${i} ` } }),
        () => res.end(),
      );
      res.on('close', () => clearInterval(t));
      return;
    }
    if (model === 'claude-runaway') {
      for (let i = 0; i < 5000 && !res.destroyed; i++)
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' go' } });
      ev('content_block_stop', { index: 0 });
      ev('message_delta', {
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 5000 },
      });
      ev('message_stop', {});
      res.end();
      return;
    }
    const text = (content[0] as { text: string }).text;
    for (const w of words(text))
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } });
    if (model === 'claude-error-mid-stream') {
      ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } });
      res.end();
      return;
    }
    ev('content_block_stop', { index: 0 });
    if (tools) {
      ev('content_block_start', {
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_01', name: 'weather', input: {} },
      });
      ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"city": ' } });
      ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } });
      ev('content_block_stop', { index: 1 });
    }
    ev('message_delta', {
      delta: { stop_reason: stop, stop_sequence: null },
      usage: { output_tokens: usage.output_tokens },
    });
    ev('message_stop', {});
    res.end();
  });
}
