/**
 * The fake OpenAI-compatible upstream of the reliability suite, as its own process (plain
 * Node, no build), so the load client's event loop in the test process does not delay its
 * answers. Started and controlled by fake-llm.ts:
 *   stdout "listening <port>" once ready;
 *   POST /__fault {"fault": "none" | "5xx" | "hang"}; GET /__stats.
 *
 * Answers POST .../chat/completions, JSON or SSE, with FIXED_USAGE unless the request carries
 * `x_fake: { prompt_tokens, completion_tokens, chunks, chunk_delay_ms }` (an unknown field the
 * gateway passes on to OpenAI-compatible upstreams as sent); completion tokens never above the
 * cap sent (`max_completion_tokens` / `max_tokens`). Faults apply to requests that
 * arrive while set: `5xx` answers 503 at once, `hang` never answers.
 */
const { createServer } = require('node:http');

const FIXED_USAGE = { prompt_tokens: 20, completion_tokens: 10 };
let fault = 'none';
const stats = { received: 0, served: 0, failed: 0, hung: 0, open: 0 };

function handle(body, res) {
  stats.received++;
  if (fault === '5xx') {
    stats.failed++;
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'fake overload', type: 'server_error', code: null } }));
    return;
  }
  if (fault === 'hang') {
    stats.hung++;
    return; // the gateway's first-byte timeout (streams) or the deployment's total_ms ends it
  }
  const o = body.x_fake || {};
  // honours the cap it is sent (the gateway always sends one: README "Quotas"), as real upstreams do
  const cap = body.max_completion_tokens ?? body.max_tokens ?? Infinity;
  const usage = {
    prompt_tokens: o.prompt_tokens ?? FIXED_USAGE.prompt_tokens,
    completion_tokens: Math.min(cap, o.completion_tokens ?? FIXED_USAGE.completion_tokens),
  };
  const total = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
  const base = { id: 'chatcmpl-rel', created: 1, model: String(body.model) };
  if (!body.stream) {
    stats.served++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        ...base,
        object: 'chat.completion',
        choices: [
          { index: 0, message: { role: 'assistant', content: 'fake answer' }, finish_reason: 'stop' },
        ],
        usage: total,
      }),
    );
    return;
  }
  const chunk = (delta, finish = null) =>
    `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk({ role: 'assistant', content: '' }));
  const n = o.chunks ?? 4;
  const delay = o.chunk_delay_ms ?? 0;
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i < n) {
      res.write(chunk({ content: `w${i++} ` }));
      if (delay > 0) setTimeout(next, delay);
      else next();
      return;
    }
    res.write(chunk({}, 'stop'));
    if (body.stream_options && body.stream_options.include_usage)
      res.write(
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage: total })}\n\n`,
      );
    res.end('data: [DONE]\n\n');
    stats.served++;
  };
  next();
}

const server = createServer((req, res) => {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const text = Buffer.concat(parts).toString('utf8');
    if (req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...stats, fault }));
      return;
    }
    if (req.url === '/__fault') {
      fault = JSON.parse(text).fault;
      res.writeHead(204);
      res.end();
      return;
    }
    stats.open++;
    res.on('close', () => stats.open--);
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'fake: bad json', type: 'invalid_request_error' } }));
      return;
    }
    handle(body, res);
  });
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
// the test process went away (even by SIGKILL): the pipe closes, so do we
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
