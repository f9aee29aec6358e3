import type { ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { MetricsService } from './metrics.service';

/** The route pattern Express matched (`/api/v1/users/:id`), or `unmatched` (unknown routes, body-parser errors). */
export function routePattern(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  // Nest answers unknown routes from a catch-all route (`{/*splat}`): that is no route either.
  if (typeof path !== 'string' || /^\{?\/?\*/.test(path)) return 'unmatched';
  return `${req.baseUrl ?? ''}${path}` || '/';
}

/**
 * Counts every request and observes its latency when the response closes, so guard
 * refusals, body-parser errors and whole SSE streams are included (an interceptor would
 * miss what happens before or after the handler). Labels use the route pattern, never
 * the raw URL, to keep cardinality bounded. A response closed before it ended is 499.
 */
export function httpMetricsMiddleware(metrics: MetricsService) {
  return (req: Request, res: Response, next: NextFunction): void => {
    trackHttpRequest(metrics, req.method, res, () => routePattern(req));
    next();
  };
}

/**
 * The HTTP metrics of one request (the middleware above, and the gateway's hot path): in
 * flight until `res` closes, then counted and timed under `route()`, read at that moment.
 */
export function trackHttpRequest(
  metrics: MetricsService,
  method: string,
  res: ServerResponse,
  route: () => string,
): void {
  const started = process.hrtime.bigint();
  metrics.inFlight(1);
  res.once('close', () => {
    metrics.inFlight(-1);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const status = res.writableFinished ? res.statusCode : 499;
    metrics.httpRequest(route(), method, status, seconds);
  });
}
