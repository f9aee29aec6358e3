import { ApiError } from '@app/observability';

/** OpenAI's embeddings request; fields the gateway does not know pass through to openai upstreams. */
export interface EmbeddingsRequest {
  model: string;
  /** A string, strings, token ids, or arrays of token ids. */
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
  [field: string]: unknown;
}

export interface Embedding {
  object: 'embedding';
  index: number;
  /** floats, or base64 of little-endian float32 (encoding_format: base64). */
  embedding: number[] | string;
}

export interface EmbeddingsResponse {
  object: 'list';
  data: Embedding[];
  model: string;
  usage?: { prompt_tokens: number; total_tokens: number };
}

/** OpenAI's limit on inputs per request. */
export const MAX_INPUTS = 2048;
const MAX_DIMENSIONS = 65_536;

const fail = (param: string, message: string): never => {
  throw ApiError.badRequest(message, 'invalid_request', param);
};
const isTokenArray = (v: unknown): v is number[] =>
  Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t) && (t as number) >= 0);

/** Checks a body against OpenAI's embeddings schema; the first problem is a 400 naming the field. */
export function validateEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    fail('', 'The request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string' || !b.model) fail('model', "'model' is required: a non-empty string");
  const input = b.input;
  if (typeof input === 'string') {
    if (!input) fail('input', "'input' must not be empty");
  } else if (Array.isArray(input)) {
    if (!input.length) fail('input', "'input' must not be an empty array");
    if (input.length > MAX_INPUTS) fail('input', `'input' takes at most ${MAX_INPUTS} items`);
    const ok =
      input.every((s) => typeof s === 'string' && s.length > 0) ||
      isTokenArray(input) ||
      input.every(isTokenArray);
    if (!ok)
      fail(
        'input',
        "'input' must be a string, an array of non-empty strings, an array of token ids, or an array of token id arrays",
      );
  } else fail('input', "'input' is required: a string or an array");
  if (b.encoding_format != null && b.encoding_format !== 'float' && b.encoding_format !== 'base64')
    fail('encoding_format', "'encoding_format' must be 'float' or 'base64'");
  if (
    b.dimensions != null &&
    (!Number.isInteger(b.dimensions) ||
      (b.dimensions as number) < 1 ||
      (b.dimensions as number) > MAX_DIMENSIONS)
  )
    fail('dimensions', `'dimensions' must be an integer between 1 and ${MAX_DIMENSIONS}`);
  if (b.user != null && typeof b.user !== 'string') fail('user', "'user' must be a string");
  return body as EmbeddingsRequest;
}

/** The inputs as a list: each a text or a list of token ids. */
export function inputsOf(req: Pick<EmbeddingsRequest, 'input'>): (string | number[])[] {
  const { input } = req;
  if (typeof input === 'string') return [input];
  if (isTokenArray(input)) return [input];
  return input as (string | number[])[];
}
