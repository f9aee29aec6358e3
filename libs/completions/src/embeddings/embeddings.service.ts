import { Injectable } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { ExchangeRunner } from '../exchange';
import { TokenCounter } from '../tokens';
import type { CompletionCaller } from '../usage-meter';
import { EmbeddingsResponse, inputsOf, validateEmbeddingsRequest } from './embeddings-types';

/**
 * POST /v1/embeddings: validated, routed and metered like chat (ExchangeRunner): the
 * reservation is the input estimate (no completion), the charge the upstream's
 * `usage.prompt_tokens` (else the estimate) at the deployment's embedding price.
 */
@Injectable()
export class EmbeddingsService {
  constructor(private readonly exchanges: ExchangeRunner) {}

  async embed(
    caller: CompletionCaller,
    body: unknown,
    res: ServerResponse,
    requestId?: string,
  ): Promise<void> {
    const started = performance.now();
    const req = validateEmbeddingsRequest(body);
    const target = this.exchanges.route(req.model, 'embeddings');
    const counter = new TokenCounter();
    const promptTokens = inputsOf(req).reduce(
      (n, input) => n + (typeof input === 'string' ? counter.count(input) : input.length),
      0,
    );
    await this.exchanges.run(
      caller,
      res,
      {
        endpoint: 'embeddings',
        target,
        model: req.model,
        stream: false,
        promptTokens,
        wanted: 0,
        requestId,
        started,
      },
      async (ex) => {
        let answer: EmbeddingsResponse;
        try {
          answer = await this.exchanges.open(ex, (p, call) => p.embed({ ...call, request: req }));
        } catch (e) {
          return this.exchanges.failedBeforeAnswer(ex, e);
        }
        const reported = answer.usage?.prompt_tokens;
        const tokens = Number.isInteger(reported) && reported! >= 0 ? reported! : promptTokens;
        answer.usage = { prompt_tokens: tokens, total_tokens: tokens };
        res.statusCode = 200;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        // Charged (its ledger row durable) before the answer completes (README "Ledger").
        await this.exchanges.settle(
          ex,
          { promptTokens: tokens, completionTokens: 0 },
          200,
          ex.signal.aborted ? 'aborted' : 'success',
        );
        res.end(JSON.stringify(answer));
      },
    );
  }
}
