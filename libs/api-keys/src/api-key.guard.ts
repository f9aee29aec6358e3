import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { HeaderAPIKeyStrategy } from 'passport-headerapikey';
import { ApiError } from '@app/observability';
import { RequestContext } from '@app/tenancy';
import { AuthFailureLimiter } from './auth-failures';
import { KeyAuthService } from './key-auth.service';
import type { KeyPrincipal } from './key-principal';
import { LastUsedTracker } from './last-used';

type KeyRequest = Request & { principal?: KeyPrincipal };
type Outcome = { user: KeyPrincipal } | { error: unknown } | { missing: true };
type Verify = (key: string, done: (err: Error | null, user?: KeyPrincipal) => void) => void;

/**
 * Runs one passport strategy the way passport does (success/fail/error bound per call),
 * but on this guard's own instances: passport's strategy registry is process-global, so
 * two gateway apps in one process (the multi-instance tests) would share the last one's.
 */
function runStrategy(strategy: HeaderAPIKeyStrategy, req: Request): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = Object.create(strategy) as HeaderAPIKeyStrategy & {
      success(user: KeyPrincipal): void;
      fail(): void;
      error(err: unknown): void;
    };
    call.success = (user) => resolve({ user });
    call.fail = () => resolve({ missing: true });
    call.error = (error) => resolve({ error });
    call.authenticate(req, {});
  });
}

/**
 * The virtual-key guard: passport-headerapikey strategies for `X-API-Key` and
 * `Authorization: Bearer sk-...` (what the OpenAI SDKs send), then the failure limiter,
 * the X-Tenant-ID check and the principal on the request.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  private readonly strategies: HeaderAPIKeyStrategy[];

  constructor(
    private readonly keys: KeyAuthService,
    private readonly failures: AuthFailureLimiter,
    private readonly ctx: RequestContext,
    private readonly lastUsed: LastUsedTracker,
  ) {
    const verify: Verify = (key, done) => {
      this.keys.authenticate(key.trim()).then(
        (p) => done(null, p),
        (e: unknown) => done(e instanceof Error ? e : new Error(String(e))),
      );
    };
    this.strategies = [
      new HeaderAPIKeyStrategy({ header: 'X-API-Key', prefix: '' }, false, verify),
      new HeaderAPIKeyStrategy({ header: 'Authorization', prefix: 'Bearer ' }, false, verify),
    ];
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<KeyRequest>();
    const client = req.ip ?? req.socket?.remoteAddress ?? 'unknown';
    const wait = this.failures.retryAfter(client);
    if (wait > 0) {
      throw new ApiError(
        429,
        'Too many failed API key attempts; try again later',
        'rate_limit_exceeded',
        'too_many_auth_failures',
        {
          'Retry-After': String(wait),
        },
      );
    }
    let principal: KeyPrincipal | undefined;
    for (const strategy of this.strategies) {
      const outcome = await runStrategy(strategy, req);
      if ('missing' in outcome) continue;
      if ('error' in outcome) {
        if (outcome.error instanceof ApiError && outcome.error.getStatus() === 401)
          this.failures.fail(client);
        throw outcome.error;
      }
      principal = outcome.user;
      break;
    }
    if (!principal) {
      throw ApiError.unauthorized(
        'Missing API key: send `Authorization: Bearer sk-...` or `X-API-Key: sk-...`',
        'missing_api_key',
      );
    }
    const tenantHeader = req.headers['x-tenant-id'];
    if (tenantHeader !== undefined && tenantHeader !== principal.tenantId) {
      throw ApiError.forbidden('X-Tenant-ID names another tenant than the API key', 'tenant_mismatch');
    }
    req.principal = principal;
    this.ctx.setPrincipal(principal);
    this.lastUsed.touch(principal.apiKeyId);
    return true;
  }
}
