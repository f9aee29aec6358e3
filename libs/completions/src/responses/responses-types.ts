import { ApiError } from '@app/observability';
import { TokenCounter } from '../tokens';
import type { TokenUsage } from '../usage';

/** OpenAI's Responses API request; fields the gateway does not know pass through to openai upstreams. */
export interface ResponsesRequest {
  model: string;
  input?: string | unknown[];
  instructions?: string | null;
  max_output_tokens?: number | null;
  stream?: boolean;
  store?: boolean;
  previous_response_id?: string | null;
  tools?: unknown[];
  [field: string]: unknown;
}

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details?: { cached_tokens?: number | null } | null;
  output_tokens: number;
  output_tokens_details?: { reasoning_tokens?: number | null } | null;
  total_tokens?: number;
}

/** A response object (only what the gateway reads; the rest passes through untouched). */
export interface ResponseObject {
  id: string;
  object: 'response';
  status?: string;
  model?: string;
  output?: unknown[];
  usage?: ResponseUsage | null;
  [field: string]: unknown;
}

/** One server-sent event of a streamed response: its type and the upstream's JSON, forwarded as is. */
export interface ResponseEvent {
  type: string;
  data: Record<string, unknown>;
  raw: string;
}

/** The events that end a response stream (they carry the final response with its usage). */
export const TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** Response ids as OpenAI makes them (resp_...); anything else cannot be one. */
export const RESPONSE_ID = /^[A-Za-z0-9_-]{1,128}$/;

const fail = (param: string, message: string): never => {
  throw ApiError.badRequest(message, 'invalid_request', param);
};

/** Checks the fields the gateway relies on; the first problem is a 400 naming the field. */
export function validateResponsesRequest(body: unknown): ResponsesRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    fail('', 'The request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string' || !b.model) fail('model', "'model' is required: a non-empty string");
  if (b.input !== undefined && typeof b.input !== 'string' && !Array.isArray(b.input))
    fail('input', "'input' must be a string or an array of input items");
  if (b.input === undefined && b.previous_response_id == null)
    fail('input', "'input' is required (unless previous_response_id is given)");
  if (b.instructions != null && typeof b.instructions !== 'string')
    fail('instructions', "'instructions' must be a string");
  if (
    b.max_output_tokens != null &&
    (!Number.isInteger(b.max_output_tokens) || (b.max_output_tokens as number) < 1)
  )
    fail('max_output_tokens', "'max_output_tokens' must be a positive integer");
  for (const f of ['stream', 'store', 'background'] as const)
    if (b[f] != null && typeof b[f] !== 'boolean') fail(f, `'${f}' must be a boolean`);
  if (b.background === true)
    fail(
      'background',
      'Background responses are not supported by the gateway: their usage arrives after the request ends and could not be metered',
    );
  if (
    b.previous_response_id != null &&
    (typeof b.previous_response_id !== 'string' || !RESPONSE_ID.test(b.previous_response_id))
  )
    fail('previous_response_id', "'previous_response_id' must be a response id");
  if (b.tools != null && !Array.isArray(b.tools)) fail('tools', "'tools' must be an array");
  return body as ResponsesRequest;
}

/** The text of an input item (messages' text parts, tool outputs, ...), for the prompt estimate. */
function itemText(item: unknown): string {
  if (typeof item === 'string') return item;
  if (typeof item !== 'object' || item === null) return '';
  const o = item as Record<string, unknown>;
  if (typeof o.content === 'string') return o.content;
  if (Array.isArray(o.content))
    return o.content
      .map((p) => {
        const part = p as Record<string, unknown>;
        return typeof part?.text === 'string' ? part.text : '';
      })
      .join(' ');
  return JSON.stringify(o);
}

/** Per-item overhead, as chat counts per message. */
const ITEM_TOKENS = 3;

/**
 * Prompt tokens of a request as sent: instructions, input items and tool definitions. A
 * `previous_response_id` brings earlier turns the gateway cannot see: the settle corrects
 * the reservation with the upstream's figure.
 */
export function countResponsePromptTokens(req: ResponsesRequest): number {
  const c = new TokenCounter();
  let n = ITEM_TOKENS;
  if (req.instructions) n += ITEM_TOKENS + c.count(req.instructions);
  const items = typeof req.input === 'string' ? [req.input] : (req.input ?? []);
  for (const item of items) n += ITEM_TOKENS + c.count(itemText(item));
  if (req.tools?.length) n += c.count(JSON.stringify(req.tools));
  return n;
}

/** The last user text of the input (what the mock answers to). */
export function lastInputText(req: ResponsesRequest): string {
  if (typeof req.input === 'string') return req.input;
  const items = req.input ?? [];
  for (let i = items.length - 1; i >= 0; i--) {
    const o = items[i] as Record<string, unknown>;
    if (typeof items[i] === 'string') return items[i] as string;
    if (o && (o.role === 'user' || o.type === 'message')) return itemText(o);
  }
  return '';
}

const count = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** The upstream's usage, when usable: input and output tokens (reasoning is part of output). */
export function responseUsageOf(
  u: ResponseUsage | null | undefined,
): (TokenUsage & { cachedTokens?: number; reasoningTokens?: number }) | undefined {
  if (!u || !count(u.input_tokens) || !count(u.output_tokens)) return undefined;
  const cached = u.input_tokens_details?.cached_tokens;
  const reasoning = u.output_tokens_details?.reasoning_tokens;
  return {
    promptTokens: u.input_tokens,
    completionTokens: u.output_tokens,
    ...(count(cached) ? { cachedTokens: cached } : {}),
    ...(count(reasoning) ? { reasoningTokens: reasoning } : {}),
  };
}

/** The text a response produced (output_text parts, function call arguments, reasoning summaries). */
export function responseOutputText(output: unknown[] | undefined): string {
  let s = '';
  for (const item of output ?? []) {
    const o = item as Record<string, unknown>;
    if (typeof o?.arguments === 'string') s += o.arguments;
    for (const part of Array.isArray(o?.content) ? o.content : []) {
      const t = (part as Record<string, unknown>)?.text;
      if (typeof t === 'string') s += t;
    }
    for (const part of Array.isArray(o?.summary) ? o.summary : []) {
      const t = (part as Record<string, unknown>)?.text;
      if (typeof t === 'string') s += t;
    }
  }
  return s;
}
