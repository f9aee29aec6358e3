import { Injectable } from '@nestjs/common';
import { CLS_ID, ClsService } from 'nestjs-cls';
import { ApiError } from '@app/observability';
import type { Principal } from './principal';

const PRINCIPAL = 'principal';
export const CLIENT_IP = 'client-ip';

/**
 * The request's tenant and principal, readable from any service without passing them
 * down (nestjs-cls). Repositories still take tenantId as their first argument.
 */
@Injectable()
export class RequestContext {
  constructor(private readonly cls: ClsService) {}

  /**
   * Runs `fn` in a new request context holding what the Cls middleware
   * (TenancyModule) sets for a request served by Nest: the request id and the client
   * address. The gateway's hot path, which Nest's middleware does not see, uses this.
   */
  run<T>(requestId: string, clientIp: string | undefined, fn: () => T): T {
    return this.cls.run(() => {
      this.cls.set(CLS_ID, requestId);
      this.cls.set(CLIENT_IP, clientIp);
      return fn();
    });
  }

  /** Inside an HTTP request (false at start-up and in the CLI). */
  get active(): boolean {
    return this.cls.isActive();
  }

  /** The caller's address (Express `req.ip`, behind a trusted loopback proxy its X-Forwarded-For). */
  get clientIp(): string | undefined {
    return this.cls.isActive() ? this.cls.get<string>(CLIENT_IP) : undefined;
  }

  get requestId(): string | undefined {
    return this.cls.isActive() ? this.cls.getId() : undefined;
  }

  get principal(): Principal | undefined {
    return this.cls.isActive() ? this.cls.get<Principal>(PRINCIPAL) : undefined;
  }

  setPrincipal(principal: Principal): void {
    if (this.cls.isActive()) this.cls.set(PRINCIPAL, principal);
  }

  /** The tenant every tenant-owned query is scoped by; 400 for a master key without X-Tenant-ID. */
  get tenantId(): string {
    const p = this.principal;
    if (p?.tenantId) return p.tenantId;
    if (p?.kind === 'master') {
      throw ApiError.badRequest(
        'This route acts inside one tenant: with the master key, name it in the X-Tenant-ID header',
        'tenant_required',
      );
    }
    throw ApiError.unauthorized('Not authenticated');
  }
}
