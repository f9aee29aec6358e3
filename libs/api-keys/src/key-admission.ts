import { Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from '@app/observability';
import { RequestContext } from '@app/tenancy';
import { KeyAuthService } from './key-auth.service';
import type { KeyPrincipal } from './key-principal';
import { LastUsedTracker } from './last-used';
import { assertScope, KeyScope } from './scopes';

/** The request as the key checks see it: its headers, and where the principal goes. */
export interface KeyRequest {
  headers: IncomingHttpHeaders;
  principal?: KeyPrincipal;
}

export const missingApiKey = () =>
  ApiError.unauthorized(
    'Missing API key: send `Authorization: Bearer sk-...` or `X-API-Key: sk-...`',
    'missing_api_key',
  );

/**
 * The key a request presents, as ApiKeyGuard's two passport-headerapikey strategies read it
 * (api-key.strategies.ts; a unit test holds the two to the same answers): a non-empty
 * `X-API-Key` decides; else `Authorization` starting with `Bearer ` (case as written);
 * else none. Trimmed, as the strategies trim before KeyAuthService.
 */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const header = headers['x-api-key'];
  if (header) return (Array.isArray(header) ? header.join(', ') : header).trim();
  const authorization = headers.authorization;
  if (authorization?.startsWith('Bearer ')) return authorization.slice(7).trim();
  return undefined;
}

/** The address the failure limiter counts by: Express's `req.ip` (trust proxy applied), else the socket's. */
export function clientAddress(req: { ip?: string; socket?: { remoteAddress?: string } }): string {
  return req.ip ?? req.socket?.remoteAddress ?? 'unknown';
}

/**
 * What happens to a virtual key's request once the key is authenticated, whoever
 * authenticated it (ApiKeyGuard through passport, or the gateway's hot path,
 * apps/gateway/src/hot-path.ts): the X-Tenant-ID check, the principal on the request and in
 * the request context, last_used_at.
 */
@Injectable()
export class KeyAdmission {
  constructor(
    private readonly keys: KeyAuthService,
    private readonly ctx: RequestContext,
    private readonly lastUsed: LastUsedTracker,
  ) {}

  accept(req: KeyRequest, principal: KeyPrincipal): void {
    const tenantHeader = req.headers['x-tenant-id'];
    if (tenantHeader !== undefined && tenantHeader !== principal.tenantId) {
      throw ApiError.forbidden('X-Tenant-ID names another tenant than the API key', 'tenant_mismatch');
    }
    req.principal = principal;
    this.ctx.setPrincipal(principal);
    this.lastUsed.touch(principal.apiKeyId);
  }

  /**
   * The whole key check of a route that needs `scope`, without passport: the presented key,
   * KeyAuthService (cache, lookup, failure limiter for `client`), `accept`, the scope.
   * The same steps in the same order as ApiKeyGuard then KeyScopeGuard.
   */
  async admit(req: KeyRequest, client: string, scope: KeyScope): Promise<KeyPrincipal> {
    const key = presentedKey(req.headers);
    if (key === undefined) throw missingApiKey();
    const principal = await this.keys.authenticate(key, client);
    this.accept(req, principal);
    assertScope(principal, scope);
    return principal;
  }
}
