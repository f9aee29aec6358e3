import { MAX_COMPLETION_TOKENS } from '@app/config';
import { ApiError } from '@app/observability';
import type { ChatRequest } from './openai-types';

/**
 * Validates a body against the OpenAI chat completions schema, by hand rather than with the
 * global whitelist ValidationPipe: fields the gateway does not know must reach the providers
 * that accept them (docs/models.md). The first problem becomes a 400 naming the field.
 */
export function validateChatRequest(body: unknown): ChatRequest {
  const v = new Validator();
  v.object(body, '');
  const b = body as Record<string, unknown>;
  v.string(b.model, 'model', { required: true, nonEmpty: true });
  v.messages(b.messages);
  v.boolean(b.stream, 'stream');
  if (b.stream_options != null) {
    if (b.stream !== true) v.fail('stream_options', "'stream_options' is only allowed when 'stream' is true");
    v.object(b.stream_options, 'stream_options');
    v.boolean((b.stream_options as Record<string, unknown>).include_usage, 'stream_options.include_usage');
  }
  // above every model's real output; a larger number is a mistake (or an attempt to overflow)
  v.integer(b.max_tokens, 'max_tokens', 1, MAX_COMPLETION_TOKENS);
  v.integer(b.max_completion_tokens, 'max_completion_tokens', 1, MAX_COMPLETION_TOKENS);
  v.number(b.temperature, 'temperature', 0, 2);
  v.number(b.top_p, 'top_p', 0, 1);
  v.integer(b.n, 'n', 1, 128);
  v.number(b.presence_penalty, 'presence_penalty', -2, 2);
  v.number(b.frequency_penalty, 'frequency_penalty', -2, 2);
  v.integer(b.seed, 'seed');
  v.boolean(b.logprobs, 'logprobs');
  v.integer(b.top_logprobs, 'top_logprobs', 0, 20);
  v.boolean(b.parallel_tool_calls, 'parallel_tool_calls');
  v.string(b.user, 'user');
  if (b.logit_bias != null) v.object(b.logit_bias, 'logit_bias');
  if (b.metadata != null) v.object(b.metadata, 'metadata');
  if (b.stop != null) {
    if (Array.isArray(b.stop)) {
      if (b.stop.length > 4) v.fail('stop', 'stop takes at most 4 sequences');
      b.stop.forEach((s, i) => v.string(s, `stop[${i}]`, { required: true }));
    } else v.string(b.stop, 'stop');
  }
  if (b.response_format != null) {
    v.object(b.response_format, 'response_format');
    v.oneOf((b.response_format as Record<string, unknown>).type, 'response_format.type', [
      'text',
      'json_object',
      'json_schema',
    ]);
  }
  v.tools(b.tools);
  v.toolChoice(b.tool_choice, Array.isArray(b.tools) && b.tools.length > 0);
  return body as ChatRequest;
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Field checks shared with the Messages API validator (messages/messages-request.ts). */
export class Validator {
  fail(param: string, message: string): never {
    throw ApiError.badRequest(message, 'invalid_request', param || null);
  }

  object(value: unknown, path: string): void {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      this.fail(path, path ? `${path} must be an object` : 'The request body must be a JSON object');
  }

  string(value: unknown, path: string, o: { required?: boolean; nonEmpty?: boolean } = {}): void {
    if (value == null) {
      if (o.required) this.fail(path, `${path} is required`);
      return;
    }
    if (typeof value !== 'string') this.fail(path, `${path} must be a string`);
    if (o.nonEmpty && value.length === 0) this.fail(path, `${path} must not be empty`);
  }

  boolean(value: unknown, path: string): void {
    if (value != null && typeof value !== 'boolean') this.fail(path, `${path} must be a boolean`);
  }

  number(value: unknown, path: string, min?: number, max?: number): void {
    if (value == null) return;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(path, `${path} must be a number`);
    if ((min !== undefined && value < min) || (max !== undefined && value > max))
      this.fail(path, `${path} must be between ${min} and ${max}`);
  }

  integer(value: unknown, path: string, min?: number, max?: number): void {
    if (value == null) return;
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(path, `${path} must be an integer`);
    if (min !== undefined && value < min) this.fail(path, `${path} must be at least ${min}`);
    if (max !== undefined && value > max) this.fail(path, `${path} must be at most ${max}`);
  }

  oneOf(value: unknown, path: string, allowed: string[]): void {
    if (typeof value !== 'string' || !allowed.includes(value))
      this.fail(path, `${path} must be one of ${allowed.join(', ')}`);
  }

  messages(value: unknown): void {
    if (!Array.isArray(value)) this.fail('messages', 'messages is required and must be an array');
    if (value.length === 0) this.fail('messages', 'messages must contain at least one message');
    value.forEach((m, i) => this.message(m, `messages[${i}]`));
  }

  private message(m: unknown, path: string): void {
    this.object(m, path);
    const msg = m as Record<string, unknown>;
    this.oneOf(msg.role, `${path}.role`, ROLES);
    this.string(msg.name, `${path}.name`);
    const role = msg.role as string;
    if (role === 'assistant') {
      if (msg.content != null) this.content(msg.content, `${path}.content`, ['text', 'refusal']);
      if (msg.tool_calls != null) this.toolCalls(msg.tool_calls, `${path}.tool_calls`);
      return;
    }
    if (msg.content === undefined || msg.content === null)
      this.fail(`${path}.content`, `${path}.content is required`);
    if (role === 'user') this.content(msg.content, `${path}.content`, null);
    else this.content(msg.content, `${path}.content`, ['text']);
    this.string(msg.tool_call_id, `${path}.tool_call_id`, { required: role === 'tool', nonEmpty: true });
  }

  /** A string or an array of content parts; `types` null = any part type (user messages). */
  private content(value: unknown, path: string, types: string[] | null): void {
    if (typeof value === 'string') return;
    if (!Array.isArray(value)) this.fail(path, `${path} must be a string or an array of content parts`);
    value.forEach((p, i) => {
      const at = `${path}[${i}]`;
      this.object(p, at);
      const part = p as Record<string, unknown>;
      this.string(part.type, `${at}.type`, { required: true, nonEmpty: true });
      if (types && !types.includes(part.type as string))
        this.fail(`${at}.type`, `${at}.type must be one of ${types.join(', ')}`);
      if (part.type === 'text') this.string(part.text, `${at}.text`, { required: true });
      if (part.type === 'image_url') {
        this.object(part.image_url, `${at}.image_url`);
        this.string((part.image_url as Record<string, unknown>).url, `${at}.image_url.url`, {
          required: true,
          nonEmpty: true,
        });
      }
    });
  }

  private toolCalls(value: unknown, path: string): void {
    if (!Array.isArray(value)) this.fail(path, `${path} must be an array`);
    value.forEach((c, i) => {
      const at = `${path}[${i}]`;
      this.object(c, at);
      const call = c as Record<string, unknown>;
      this.string(call.id, `${at}.id`, { required: true });
      this.oneOf(call.type, `${at}.type`, ['function']);
      this.object(call.function, `${at}.function`);
      const fn = call.function as Record<string, unknown>;
      this.string(fn.name, `${at}.function.name`, { required: true, nonEmpty: true });
      this.string(fn.arguments, `${at}.function.arguments`, { required: true });
    });
  }

  tools(value: unknown): void {
    if (value == null) return;
    if (!Array.isArray(value)) this.fail('tools', 'tools must be an array');
    value.forEach((t, i) => {
      const at = `tools[${i}]`;
      this.object(t, at);
      const tool = t as Record<string, unknown>;
      this.string(tool.type, `${at}.type`, { required: true, nonEmpty: true });
      if (tool.type !== 'function') return;
      this.object(tool.function, `${at}.function`);
      const fn = tool.function as Record<string, unknown>;
      this.string(fn.name, `${at}.function.name`, { required: true });
      if (!TOOL_NAME.test(fn.name as string))
        this.fail(`${at}.function.name`, `${at}.function.name must match ^[a-zA-Z0-9_-]{1,64}$`);
      this.string(fn.description, `${at}.function.description`);
      if (fn.parameters != null) this.object(fn.parameters, `${at}.function.parameters`);
      this.boolean(fn.strict, `${at}.function.strict`);
    });
  }

  toolChoice(value: unknown, hasTools: boolean): void {
    if (value == null) return;
    if (typeof value === 'string') {
      this.oneOf(value, 'tool_choice', ['none', 'auto', 'required']);
      if (value === 'required' && !hasTools) this.fail('tool_choice', "tool_choice 'required' needs tools");
      return;
    }
    this.object(value, 'tool_choice');
    const c = value as Record<string, unknown>;
    this.string(c.type, 'tool_choice.type', { required: true });
    if (c.type === 'function') {
      this.object(c.function, 'tool_choice.function');
      this.string((c.function as Record<string, unknown>).name, 'tool_choice.function.name', {
        required: true,
        nonEmpty: true,
      });
      if (!hasTools) this.fail('tool_choice', 'tool_choice names a function but no tools were given');
    }
  }
}
