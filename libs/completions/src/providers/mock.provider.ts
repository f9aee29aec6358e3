import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatMessage,
  ChatRequest,
  Usage,
} from '../chat/openai-types';
import type { Deployment, MockOptions } from '../routing/routing-table';
import { countPromptTokens, countTokens, encodeTokens, decodeTokens } from '../tokens';
import { cappedRequest, Provider, StreamItem, UpstreamCall } from './provider';

const NO_OPTIONS: MockOptions = { latencyMs: 0, chunkDelayMs: 0 };

function lastUserText(messages: ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content))
      return m.content
        .filter((p) => p.type === 'text')
        .map((p) => (p as { text: string }).text)
        .join(' ');
  }
  return '';
}

/** The mock's answer: fixed (`options.reply`) or derived from the last user message; cut at max_tokens. */
export function mockAnswer(
  req: ChatRequest,
  d: Deployment,
): { text: string; finish: 'stop' | 'length'; usage: Usage } {
  const o = d.mock ?? NO_OPTIONS;
  const said = lastUserText(req.messages).replace(/\s+/g, ' ').trim();
  let text =
    o.reply ??
    `This is a mock answer from ${d.model}. You said: "${said.length > 200 ? `${said.slice(0, 200)}...` : said}"`;
  let finish: 'stop' | 'length' = 'stop';
  const max = req.max_completion_tokens ?? req.max_tokens;
  if (max != null) {
    const tokens = encodeTokens(text);
    if (tokens.length > max) {
      text = decodeTokens(tokens.slice(0, max));
      finish = 'length';
    }
  }
  const prompt = o.promptTokens ?? countPromptTokens(req);
  const completion = o.completionTokens ?? countTokens(text);
  return {
    text,
    finish,
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

/**
 * Built in, no network: a deterministic answer derived from the prompt, streamed word by
 * word, with the latency and token counts of the deployment's options. The offline default.
 */
export class MockProvider extends Provider {
  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    const { text, finish, usage } = mockAnswer(cappedRequest(call), call.deployment);
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    const n = call.request.n ?? 1;
    return {
      id: `chatcmpl-mock-${randomBytes(8).toString('hex')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: call.deployment.model,
      choices: Array.from({ length: n }, (_, index) => ({
        index,
        message: { role: 'assistant' as const, content: text },
        finish_reason: finish,
        logprobs: null,
      })),
      usage:
        n === 1
          ? usage
          : {
              ...usage,
              completion_tokens: usage.completion_tokens * n,
              total_tokens: usage.prompt_tokens + usage.completion_tokens * n,
            },
    };
  }

  async stream(call: UpstreamCall): Promise<AsyncIterable<StreamItem>> {
    await this.wait(call.deployment.mock?.latencyMs ?? 0, call.signal);
    return this.chunks(call);
  }

  private async *chunks(call: UpstreamCall): AsyncGenerator<StreamItem> {
    const { text, finish, usage } = mockAnswer(cappedRequest(call), call.deployment);
    const n = call.request.n ?? 1;
    const base = {
      id: `chatcmpl-mock-${randomBytes(8).toString('hex')}`,
      object: 'chat.completion.chunk' as const,
      created: Math.floor(Date.now() / 1000),
      model: call.deployment.model,
    };
    const chunk = (
      delta: ChatCompletionChunk['choices'][number]['delta'],
      finish_reason: 'stop' | 'length' | null = null,
    ) => ({
      chunk: {
        ...base,
        choices: Array.from({ length: n }, (_, index) => ({ index, delta, finish_reason, logprobs: null })),
      },
    });
    yield chunk({ role: 'assistant', content: '' });
    for (const word of text.match(/\s*\S+\s*/g) ?? []) {
      await this.wait(call.deployment.mock?.chunkDelayMs ?? 0, call.signal);
      yield chunk({ content: word });
    }
    yield chunk({}, finish);
    yield {
      chunk: {
        ...base,
        choices: [],
        usage: {
          ...usage,
          completion_tokens: usage.completion_tokens * n,
          total_tokens: usage.prompt_tokens + usage.completion_tokens * n,
        },
      },
    };
  }

  private async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    if (ms <= 0) return;
    try {
      await sleep(ms, undefined, { signal });
    } catch {
      throw signal.reason;
    }
  }
}
