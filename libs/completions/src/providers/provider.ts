import { ApiError } from '@app/observability';
import type { ChatCompletion, ChatCompletionChunk, ChatRequest } from '../chat/openai-types';
import type { EmbeddingsRequest, EmbeddingsResponse } from '../embeddings/embeddings-types';
import type { ResponseEvent, ResponseObject, ResponsesRequest } from '../responses/responses-types';
import type { Deployment } from '../routing/routing-table';

/** The timeouts of one attempt, the deployment's overrides applied (README "Models and providers"). */
export interface AttemptTimeouts {
  connectMs: number;
  /** Streams: until the first chunk, counted from the request. Non-streamed answers: not applied. */
  firstByteMs: number;
  /** Streams: the longest silence between two chunks. */
  idleMs: number;
}

/** One upstream call: the validated client request, where it goes, and when to give up. */
export interface UpstreamCall {
  request: ChatRequest;
  deployment: Deployment;
  /** Aborted on client disconnect or the total timeout; providers stop at once. */
  signal: AbortSignal;
  timeouts: AttemptTimeouts;
  /**
   * The grant (QuotaService.admit): completion tokens per choice the upstream may produce.
   * Always sent as the cap (`cappedRequest`); a stream past it is cut by the gateway.
   */
  maxTokens: number;
  /**
   * Called once the upstream accepted the request (2xx status): from then on it may bill
   * the prompt, so a timeout or failure charges the prompt estimate instead of releasing.
   */
  onAccepted?: () => void;
}

/**
 * The client's request with the grant as its cap: in `max_completion_tokens` when the client
 * used that field, else in `max_tokens` (what every OpenAI-compatible server and the
 * Anthropic translation read). Set even when the client sent no cap: an upstream left
 * uncapped may write up to its context length.
 */
export function cappedRequest(call: Pick<UpstreamCall, 'request' | 'maxTokens'>): ChatRequest {
  const req = { ...call.request };
  if (req.max_completion_tokens != null) {
    req.max_completion_tokens = call.maxTokens;
    if (req.max_tokens != null) req.max_tokens = call.maxTokens;
  } else req.max_tokens = call.maxTokens;
  return req;
}

/** One call of another endpoint (embeddings, responses): the body, where it goes, when to give up. */
export interface EndpointCall<R> {
  request: R;
  deployment: Deployment;
  signal: AbortSignal;
  timeouts: AttemptTimeouts;
  /** As UpstreamCall.onAccepted. */
  onAccepted?: () => void;
}

/** GET, DELETE or cancel of a stored response, passed through to the deployment that made it. */
export interface ResponseOp {
  method: 'GET' | 'DELETE' | 'POST';
  id: string;
  /** '' or '/cancel'. */
  suffix: '' | '/cancel';
  /** The client's query string (without `?`), e.g. `include[]=...`. */
  query: string;
}

/** An upstream answer relayed as is: status and JSON body. */
export interface RelayedAnswer {
  status: number;
  body: string;
}

/** One chunk of a stream, in OpenAI's shape. */
export interface StreamItem {
  chunk: ChatCompletionChunk;
  /** The upstream's own JSON for this chunk, forwarded byte for byte when nothing changes. */
  raw?: string;
  /** The upstream's whole SSE event for this chunk (`data: <raw>\n\n`) as received, when it came so: relayed as is. */
  bytes?: Buffer;
  /** Prompt tokens the upstream reported before the end (Anthropic's message_start). */
  promptTokens?: number;
}

/**
 * An LLM provider speaking OpenAI's chat format to the gateway. One instance per kind;
 * the deployment travels with each call. Errors before the first byte are `UpstreamError`s
 * (retryable ones let the next deployment serve); errors thrown while a stream is iterated
 * end that stream.
 */
export abstract class Provider {
  abstract complete(call: UpstreamCall): Promise<ChatCompletion>;

  /** Resolves once the upstream accepted the request (2xx headers); then yields its chunks. */
  abstract stream(call: UpstreamCall): Promise<AsyncIterable<StreamItem>>;

  /**
   * Embeddings in OpenAI's format. Only called for deployments whose endpoints include
   * `embeddings` (routing-table.ts PROVIDER_ENDPOINTS), so the default is never reached.
   */
  embed(call: EndpointCall<EmbeddingsRequest>): Promise<EmbeddingsResponse> {
    return Promise.reject(unsupported(call.deployment, 'embeddings'));
  }

  /** A response (Responses API), unstreamed. Only for deployments serving `responses`. */
  respond(call: EndpointCall<ResponsesRequest>): Promise<ResponseObject> {
    return Promise.reject(unsupported(call.deployment, 'the Responses API'));
  }

  /** Resolves once the upstream accepted the request; then yields its `response.*` events. */
  respondStream(call: EndpointCall<ResponsesRequest>): Promise<AsyncIterable<ResponseEvent>> {
    return Promise.reject(unsupported(call.deployment, 'the Responses API'));
  }

  /** GET / DELETE / cancel of a stored response. */
  responseOp(call: Omit<EndpointCall<unknown>, 'request'>, _op: ResponseOp): Promise<RelayedAnswer> {
    return Promise.reject(unsupported(call.deployment, 'the Responses API'));
  }
}

export function unsupported(d: Deployment, what: string): UpstreamError {
  return new UpstreamError(
    ApiError.badRequest(
      `The deployment ${d.id} (${d.provider}) does not serve ${what}`,
      'unsupported_endpoint',
    ),
    false,
  );
}

/**
 * What a failure before the first byte allows (the failure table in README "Models and providers"):
 * - `transient`: connection reset, 502, 503: the same deployment may be retried, then the next serves;
 * - `unavailable`: refused, unreachable, 5xx, 408, timeouts before the first chunk: the next serves;
 * - `conflict`: 409: the next serves; not a sign of a sick deployment (no cooldown count);
 * - `rate_limited`: 429: the next serves; this one rests for its Retry-After;
 * - `final`: the answer for every deployment (a 4xx), or a failure after the answer started.
 */
export type FailureKind = 'transient' | 'unavailable' | 'conflict' | 'rate_limited' | 'final';

/** An upstream failure, already phrased for the client. */
export class UpstreamError extends Error {
  override name = 'UpstreamError';
  readonly kind: FailureKind;

  constructor(
    readonly apiError: ApiError,
    /** true = `unavailable` (the next deployment may serve), false = `final`. */
    kind: boolean | FailureKind,
    /** 429: how long the provider asked to wait (Retry-After, retry-after-ms). */
    readonly retryAfterMs?: number,
  ) {
    super(apiError.message);
    this.kind = kind === true ? 'unavailable' : kind === false ? 'final' : kind;
  }

  /** The next deployment may serve (nothing reached the client yet). */
  get retryable(): boolean {
    return this.kind !== 'final';
  }

  static badGateway(message: string, kind: boolean | FailureKind, code = 'upstream_error'): UpstreamError {
    return new UpstreamError(new ApiError(502, message, 'server_error', code), kind);
  }

  /**
   * The deployment has max_connections exchanges in flight on this instance: not tried (no
   * queue in front of it), not counted as its failure; the next deployment may serve.
   */
  static saturated(deploymentId: string, connections: number): UpstreamError {
    return new UpstreamError(
      new ApiError(
        503,
        `Every deployment of this model is at its connection limit (${deploymentId}: max_connections ${connections}); retry shortly`,
        'server_error',
        'upstream_saturated',
        { 'retry-after': '1' },
      ),
      'conflict',
    );
  }

  static timeout(message: string, kind: boolean | FailureKind = false): UpstreamError {
    return new UpstreamError(new ApiError(504, message, 'server_error', 'upstream_timeout'), kind);
  }
}
