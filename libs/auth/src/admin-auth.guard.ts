import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { ApiError } from '@app/observability';
import { AUTH_METADATA, AuthMetadata, Principal, RequestContext, TenantsService } from '@app/tenancy';
import { AuthService } from './auth.service';

/** X-Tenant-ID: a tenant id (UUID) or a tenant name (what tenant names may hold, in ASCII). */
const TENANT_REF = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$/;

export function bearerToken(req: Request): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/**
 * The one global guard of the admin API: a route is public, a virtual-key route (left to
 * the api-keys guard), or needs a JWT or the master key. Routes with no metadata need
 * authentication: forgetting a decorator fails closed.
 */
@Injectable()
export class AdminAuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
    private readonly tenants: TenantsService,
    private readonly ctx: RequestContext,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const meta = this.reflector.getAllAndOverride<AuthMetadata | undefined>(AUTH_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]) ?? { mode: 'admin', tenantScoped: true };
    if (meta.mode === 'public' || meta.mode === 'api-key') return true;

    const req = context.switchToHttp().getRequest<Request & { principal?: Principal }>();
    const token = bearerToken(req);
    if (!token)
      throw ApiError.unauthorized(
        'Missing credentials: send Authorization: Bearer <JWT or master key>',
        'missing_credentials',
      );
    const headerTenant = req.headers['x-tenant-id'];
    if (headerTenant !== undefined && (typeof headerTenant !== 'string' || !TENANT_REF.test(headerTenant))) {
      throw ApiError.badRequest('X-Tenant-ID must be a tenant id (UUID) or name', 'invalid_tenant_id');
    }
    const named = headerTenant ? await this.tenants.findByIdOrName(headerTenant).catch(() => null) : null;

    let principal: Principal;
    if (this.auth.isMasterKey(token)) {
      principal = { kind: 'master', role: 'admin' };
      if (headerTenant) {
        if (named?.status !== 'active') {
          throw ApiError.notFound(`No active tenant ${headerTenant}`, 'tenant_not_found');
        }
        principal.tenantId = named.id;
      } else if (meta.tenantScoped && !meta.masterOnly) {
        throw ApiError.badRequest(
          'This route acts inside one tenant: with the master key, name it in the X-Tenant-ID header',
          'tenant_required',
        );
      }
    } else {
      if (meta.masterOnly) throw ApiError.forbidden('Only the master key may do this', 'master_key_required');
      if (token.startsWith('sk-')) {
        throw ApiError.unauthorized(
          'API keys are for the completion routes; the admin API takes a JWT or the master key',
          'wrong_credential_type',
        );
      }
      const claims = await this.auth.verifyJwt(token);
      if (headerTenant && named?.id !== claims.tid)
        throw ApiError.forbidden('X-Tenant-ID names another tenant than your login', 'tenant_mismatch');
      principal = { kind: 'user', tenantId: claims.tid, userId: claims.sub, role: claims.role };
      if (meta.roles && !meta.roles.includes(claims.role)) {
        throw ApiError.forbidden(`This needs the ${meta.roles.join(' or ')} role`, 'role_not_allowed');
      }
    }
    req.principal = principal;
    this.ctx.setPrincipal(principal);
    return true;
  }
}
