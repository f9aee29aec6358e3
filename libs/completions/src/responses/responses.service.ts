import { Injectable, Logger } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { AppConfig } from '@app/config';
import { ApiError } from '@app/observability';
import { send, SSE_HEADERS } from '../completions.service';
import { Aborted, Exchange, ExchangeRunner, primed } from '../exchange';
import type { ResponseOp } from '../providers/provider';
import { ProviderRegistry } from '../providers/provider-registry';
import { RoutingTable } from '../routing/routing-table';
import { EXACT_CHARS, TokenCounter } from '../tokens';
import type { CompletionCaller, UsageMeta } from '../usage-meter';
import { ResponseOwnersRepository } from './response-owners.repository';
import {
  countResponsePromptTokens,
  RESPONSE_ID,
  ResponseObject,
  ResponsesRequest,
  responseOutputText,
  responseUsageOf,
  TERMINAL_EVENTS,
  validateResponsesRequest,
} from './responses-types';

/** Stream events whose `delta` is produced text (counted when the stream ends without usage). */
const PRODUCED =
  /^response\.(output_text|function_call_arguments|reasoning_summary_text|reasoning_text|refusal)\.delta$/;

const notFound = (id: string, param: string | null = null) =>
  new ApiError(
    404,
    `No response found with id '${id}'.`,
    'invalid_request_error',
    'response_not_found',
    {},
    param,
  );

/**
 * The Responses API (POST /v1/responses, GET/DELETE /v1/responses/{id}, POST .../cancel),
 * metered like chat through the ExchangeRunner: the reservation is the prompt estimate plus
 * the completion budget, which goes upstream as `max_output_tokens`; the charge is the
 * upstream's `usage`. Each stored response id is recorded with its tenant: another
 * tenant's key gets 404 on it (and on it as `previous_response_id`).
 */
@Injectable()
export class ResponsesService {
  private readonly logger = new Logger('Responses');

  constructor(
    private readonly exchanges: ExchangeRunner,
    private readonly owners: ResponseOwnersRepository,
    private readonly routes: RoutingTable,
    private readonly providers: ProviderRegistry,
    private readonly config: AppConfig,
  ) {}

  async create(
    caller: CompletionCaller,
    body: unknown,
    res: ServerResponse,
    requestId?: string,
  ): Promise<void> {
    const started = performance.now();
    const req = validateResponsesRequest(body);
    let target = this.exchanges.route(req.model, 'responses');
    if (req.previous_response_id) {
      // The earlier response lives at the deployment that made it: continue there, and only
      // within the tenant that made it.
      const prev = await this.owners.findInTenant(caller.tenantId, req.previous_response_id);
      if (!prev) throw notFound(req.previous_response_id, 'previous_response_id');
      const d = target.deployments.find((x) => x.id === prev.deployment);
      if (!d)
        throw ApiError.badRequest(
          `The response '${req.previous_response_id}' was made by the model "${prev.model}": continue it with that model`,
          'invalid_request',
          'previous_response_id',
        );
      target = { ...target, deployments: [d] };
    }
    const promptTokens = countResponsePromptTokens(req);
    const stream = req.stream === true;
    await this.exchanges.run(
      caller,
      res,
      {
        endpoint: 'responses',
        target,
        model: req.model,
        stream,
        promptTokens,
        wanted: req.max_output_tokens ?? null,
        requestId,
        started,
      },
      (ex) => {
        // The grant (what the meter reserved) is the cap the upstream gets, always.
        const upstream: ResponsesRequest = { ...req, max_output_tokens: ex.grant };
        return stream ? this.streamed(caller, ex, upstream, res) : this.unstreamed(caller, ex, upstream, res);
      },
    );
  }

  private async unstreamed(
    caller: CompletionCaller,
    ex: Exchange,
    req: ResponsesRequest,
    res: ServerResponse,
  ): Promise<void> {
    let r: ResponseObject;
    try {
      r = await this.exchanges.open(ex, (p, call) => p.respond({ ...call, request: req }));
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
    }
    const usage = responseUsageOf(r.usage) ?? {
      promptTokens: ex.promptTokens,
      completionTokens: new TokenCounter().count(responseOutputText(r.output)),
    };
    if (usage.completionTokens > ex.grant)
      this.exchanges.capViolation(ex, `${usage.completionTokens} output tokens against a cap of ${ex.grant}`);
    await this.remember(caller, ex, req, r.id);
    res.statusCode = 200;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    // Charged (its ledger row durable) before the answer completes (README "Ledger").
    await this.exchanges.settle(ex, usage, 200, ex.signal.aborted ? 'aborted' : 'success', detail(usage));
    res.end(JSON.stringify(r));
  }

  private async streamed(
    caller: CompletionCaller,
    ex: Exchange,
    req: ResponsesRequest,
    res: ServerResponse,
  ): Promise<void> {
    let events: AsyncIterable<{ type: string; data: Record<string, unknown>; raw: string }>;
    try {
      events = await this.exchanges.open(ex, async (p, call) =>
        primed(await p.respondStream({ ...call, request: req })),
      );
    } catch (e) {
      return this.exchanges.failedBeforeAnswer(ex, e);
    }
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    let usage: ReturnType<typeof responseUsageOf>;
    let head = '';
    let length = 0;
    let seq = 0;
    let outcome: UsageMeta['status'] = 'success';
    try {
      for await (const e of events) {
        if (ex.signal.aborted) throw ex.signal.reason;
        if (typeof e.data.sequence_number === 'number') seq = e.data.sequence_number + 1;
        if (e.type === 'response.created')
          await this.remember(caller, ex, req, (e.data.response as ResponseObject | undefined)?.id);
        if (PRODUCED.test(e.type) && typeof e.data.delta === 'string') {
          if (head.length < EXACT_CHARS) head += e.data.delta.slice(0, EXACT_CHARS - head.length);
          length += e.data.delta.length;
        }
        if (TERMINAL_EVENTS.has(e.type)) usage = responseUsageOf((e.data.response as ResponseObject)?.usage);
        const wait = send(res, `event: ${e.type}\ndata: ${e.raw}\n\n`, ex.signal);
        if (wait) await wait;
      }
    } catch (e) {
      if (e instanceof Aborted && e.by === 'client') {
        outcome = 'aborted';
      } else {
        outcome = 'upstream_error';
        const err = this.exchanges.toApiError(e);
        this.logger.warn(`${ex.deployment?.id}: response stream failed after it started: ${err.message}`);
        const body = err.toBody(ex.requestId).error;
        const event = {
          type: 'error',
          code: body.code,
          message: body.message,
          param: null,
          sequence_number: seq,
        };
        await send(res, `event: error\ndata: ${JSON.stringify(event)}\n\n`);
      }
    }
    const u = usage ?? {
      promptTokens: ex.promptTokens,
      completionTokens: new TokenCounter().countHead(head, length),
    };
    // Before the stream's end: the row is durable before the client sees it end.
    await this.exchanges.settle(ex, u, 200, outcome, detail(u));
    if (outcome !== 'aborted') res.end();
  }

  /** Records who made a stored response (before the client can learn its id). */
  private async remember(
    caller: CompletionCaller,
    ex: Exchange,
    req: ResponsesRequest,
    id: string | undefined,
  ): Promise<void> {
    if (req.store === false || !id || !RESPONSE_ID.test(id) || !ex.deployment) return;
    try {
      await this.owners.record({
        responseId: id,
        tenantId: caller.tenantId,
        apiKeyId: caller.apiKeyId,
        model: ex.model.slice(0, 200),
        deployment: ex.deployment.id.slice(0, 300),
      });
    } catch (e) {
      this.logger.error({ err: e }, `could not record the owner of response ${id}: it will answer 404`);
    }
  }

  /** GET, DELETE or cancel: only for the tenant that made the response, at the deployment that made it. */
  async relay(
    caller: CompletionCaller,
    id: string,
    op: Omit<ResponseOp, 'id'>,
    res: ServerResponse,
  ): Promise<void> {
    if (!RESPONSE_ID.test(id)) throw notFound(id.slice(0, 128));
    const owner = await this.owners.findInTenant(caller.tenantId, id);
    if (!owner) throw notFound(id);
    const d = this.routes.resolve(owner.model)?.deployments.find((x) => x.id === owner.deployment);
    if (!d)
      throw new ApiError(
        404,
        `The response '${id}' was made by a deployment that is no longer configured`,
        'invalid_request_error',
        'response_not_found',
      );
    const signal = AbortSignal.timeout(this.config.UPSTREAM_TOTAL_TIMEOUT_MS);
    let answer: { status: number; body: string };
    try {
      answer = await this.providers
        .for(d)
        .responseOp({ deployment: d, signal, timeouts: this.exchanges.timeouts(d) }, { ...op, id });
    } catch (e) {
      throw this.exchanges.toApiError(e);
    }
    if (op.method === 'DELETE' && (answer.status < 300 || answer.status === 404))
      await this.owners.deleteInTenant(caller.tenantId, id);
    res.statusCode = answer.status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(answer.body);
  }
}

function detail(u: { cachedTokens?: number; reasoningTokens?: number }) {
  return { cachedTokens: u.cachedTokens, reasoningTokens: u.reasoningTokens };
}
