import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { mockAnswer } from '../providers/mock.provider';
import type { Deployment } from '../routing/routing-table';
import { countMessagesPromptTokens, countTokens } from '../tokens';
import type { MessagesRequest } from './messages-request';
import { MessagesEvent, MessagesResponse, messagesToChat } from './messages-translate';

async function wait(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw signal.reason;
  if (ms <= 0) return;
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    throw signal.reason;
  }
}

/**
 * The mock's Messages answer, natively (no translation on the way out): the mock's text
 * (docs/models.md), cut at the first stop sequence; a tool_use block when tool_choice forces
 * a tool (`any`: the first one), so a client can run a tool round trip offline.
 */
export function mockMessage(req: MessagesRequest, d: Deployment, maxTokens: number): MessagesResponse {
  const id = `msg_mock_${randomBytes(8).toString('hex')}`;
  const o = d.mock;
  const input = o?.promptTokens ?? countMessagesPromptTokens(req);
  const tc = req.tool_choice;
  const forced =
    req.tools?.length && (tc?.type === 'any' || tc?.type === 'tool')
      ? (req.tools.find((t) => tc.type === 'any' || t.name === tc.name) ?? null)
      : null;
  const base = {
    id,
    type: 'message' as const,
    role: 'assistant' as const,
    model: d.model,
    stop_sequence: null,
  };
  if (forced) {
    const block = {
      type: 'tool_use',
      id: `toolu_mock_${randomBytes(6).toString('hex')}`,
      name: forced.name,
      input: {},
    };
    return {
      ...base,
      content: [block],
      stop_reason: 'tool_use',
      usage: { input_tokens: input, output_tokens: o?.completionTokens ?? countTokens(forced.name + '{}') },
    };
  }
  const chat = messagesToChat({ ...req, tools: undefined, tool_choice: undefined }, d.model, maxTokens);
  const answer = mockAnswer(chat, d);
  let text = answer.text;
  let stopSequence: string | null = null;
  for (const s of req.stop_sequences ?? []) {
    const at = text.indexOf(s);
    if (at >= 0 && (stopSequence === null || at < text.indexOf(stopSequence))) stopSequence = s;
  }
  if (stopSequence !== null) text = text.slice(0, text.indexOf(stopSequence));
  return {
    ...base,
    content: [{ type: 'text', text }],
    stop_reason:
      stopSequence !== null ? 'stop_sequence' : answer.finish === 'length' ? 'max_tokens' : 'end_turn',
    stop_sequence: stopSequence,
    usage: { input_tokens: input, output_tokens: o?.completionTokens ?? countTokens(text) },
  };
}

/** The mock's answer as Anthropic's event sequence, word by word with the deployment's delays. */
export async function* mockEvents(
  msg: MessagesResponse,
  d: Deployment,
  signal: AbortSignal,
): AsyncGenerator<MessagesEvent> {
  const ev = (event: string, data: Record<string, unknown>): MessagesEvent => ({
    event,
    data: { type: event, ...data },
  });
  yield ev('message_start', {
    message: {
      ...msg,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: msg.usage.input_tokens, output_tokens: 1 },
    },
  });
  yield ev('ping', {});
  for (const [index, block] of msg.content.entries()) {
    if (block.type === 'tool_use') {
      yield ev('content_block_start', { index, content_block: { ...block, input: {} } });
      yield ev('content_block_delta', {
        index,
        delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
      });
    } else {
      yield ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const word of (block.text as string).match(/\s*\S+\s*/g) ?? []) {
        await wait(d.mock?.chunkDelayMs ?? 0, signal);
        yield ev('content_block_delta', { index, delta: { type: 'text_delta', text: word } });
      }
    }
    yield ev('content_block_stop', { index });
  }
  yield ev('message_delta', {
    delta: { stop_reason: msg.stop_reason, stop_sequence: msg.stop_sequence },
    usage: { output_tokens: msg.usage.output_tokens },
  });
  yield ev('message_stop', {});
}

export { wait as mockWait };
