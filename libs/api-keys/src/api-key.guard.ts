import { ExecutionContext, Injectable } from '@nestjs/common';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { ApiError } from '@app/observability';
import { RequestContext } from '@app/tenancy';
import { API_KEY_BEARER_STRATEGY, API_KEY_HEADER_STRATEGY, keyAuthScope } from './api-key.strategies';
import { KeyAuthService } from './key-auth.service';
import type { KeyPrincipal } from './key-principal';
import { LastUsedTracker } from './last-used';

type KeyRequest = Request & { principal?: KeyPrincipal; user?: unknown };

/**
 * The virtual-key guard: @nestjs/passport's AuthGuard over two passport-headerapikey
 * strategies, `X-API-Key` then `Authorization: Bearer sk-...` (the first header present
 * decides), then the X-Tenant-ID check and the principal on the request. Throttling lives
 * in KeyAuthService (only the costly paths are counted; see AuthFailureLimiter).
 */
@Injectable()
export class ApiKeyGuard extends AuthGuard([API_KEY_HEADER_STRATEGY, API_KEY_BEARER_STRATEGY]) {
  constructor(
    private readonly keys: KeyAuthService,
    private readonly ctx: RequestContext,
    private readonly lastUsed: LastUsedTracker,
  ) {
    super();
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<KeyRequest>();
    const client = req.ip ?? req.socket?.remoteAddress ?? 'unknown';
    await keyAuthScope.run({ auth: this.keys, client }, () => super.canActivate(context));
    const principal = req.user as KeyPrincipal;
    delete req.user;
    const tenantHeader = req.headers['x-tenant-id'];
    if (tenantHeader !== undefined && tenantHeader !== principal.tenantId) {
      throw ApiError.forbidden('X-Tenant-ID names another tenant than the API key', 'tenant_mismatch');
    }
    req.principal = principal;
    this.ctx.setPrincipal(principal);
    this.lastUsed.touch(principal.apiKeyId);
    return true;
  }

  /** passport's verdict: an ApiError from the strategies as is; no key header at all is 401. */
  override handleRequest<TUser = KeyPrincipal>(err: unknown, user: TUser | false): TUser {
    if (err) throw err;
    if (!user)
      throw ApiError.unauthorized(
        'Missing API key: send `Authorization: Bearer sk-...` or `X-API-Key: sk-...`',
        'missing_api_key',
      );
    return user;
  }
}
