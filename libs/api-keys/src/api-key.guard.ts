import { ExecutionContext, Injectable } from '@nestjs/common';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { API_KEY_BEARER_STRATEGY, API_KEY_HEADER_STRATEGY, keyAuthScope } from './api-key.strategies';
import { clientAddress, KeyAdmission, missingApiKey } from './key-admission';
import { KeyAuthService } from './key-auth.service';
import type { KeyPrincipal } from './key-principal';

type KeyRequest = Request & { principal?: KeyPrincipal; user?: unknown };

/**
 * The virtual-key guard: @nestjs/passport's AuthGuard over two passport-headerapikey
 * strategies, `X-API-Key` then `Authorization: Bearer sk-...` (the first header present
 * decides), then KeyAdmission.accept (the X-Tenant-ID check, the principal on the request,
 * last_used_at; shared with the gateway's hot path). Throttling lives in KeyAuthService (only the costly paths are counted; see AuthFailureLimiter).
 */
@Injectable()
export class ApiKeyGuard extends AuthGuard([API_KEY_HEADER_STRATEGY, API_KEY_BEARER_STRATEGY]) {
  constructor(
    private readonly keys: KeyAuthService,
    private readonly admission: KeyAdmission,
  ) {
    super();
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const req = context.switchToHttp().getRequest<KeyRequest>();
    const client = clientAddress(req);
    await keyAuthScope.run({ auth: this.keys, client }, () => super.canActivate(context));
    const principal = req.user as KeyPrincipal;
    delete req.user;
    this.admission.accept(req, principal);
    return true;
  }

  /** passport's verdict: an ApiError from the strategies as is; no key header at all is 401. */
  override handleRequest<TUser = KeyPrincipal>(err: unknown, user: TUser | false): TUser {
    if (err) throw err;
    if (!user) throw missingApiKey();
    return user;
  }
}
