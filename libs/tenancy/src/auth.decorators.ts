import { applyDecorators, createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiForbiddenResponse,
  ApiHeader,
  ApiNotFoundResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { AUTH_METADATA } from '@app/observability';
import type { Principal, Role } from './principal';

export interface AuthOptions {
  /** Roles allowed (the master key always passes). Default: any logged-in user. */
  roles?: Role[];
  /** Only the master key (tenant management). */
  masterOnly?: boolean;
  /** The route needs a tenant: a master key must name one with X-Tenant-ID. Default true. */
  tenantScoped?: boolean;
}

export type AuthMetadata = { mode: 'public' } | { mode: 'api-key' } | ({ mode: 'admin' } & AuthOptions);

/** JWT or master key (admin API). Writes the Swagger security metadata too. */
export const Authenticated = (options: AuthOptions = {}) =>
  applyDecorators(
    SetMetadata(AUTH_METADATA, { mode: 'admin', tenantScoped: true, ...options } satisfies AuthMetadata),
    ApiBearerAuth('bearer'),
    ApiUnauthorizedResponse({ description: 'Missing or invalid JWT / master key' }),
    ApiForbiddenResponse({ description: 'Role not allowed' }),
    ApiBadRequestResponse({
      description: 'Invalid input, or a missing or malformed X-Tenant-ID with the master key',
    }),
    ...(options.tenantScoped === false || options.masterOnly
      ? []
      : [
          ApiHeader({
            name: 'X-Tenant-ID',
            required: false,
            schema: { type: 'string', example: 'acme' },
            description:
              'Master key only (required with it): the tenant to act in, by id or by name. A JWT acts in its own tenant.',
          }),
          ApiNotFoundResponse({
            description: 'Not found (or, with the master key, no active tenant X-Tenant-ID)',
          }),
        ]),
  );

/**
 * Virtual API key routes: the global admin guard stands aside; the api-keys lib's
 * ApiKeyGuard authenticates (see `@ApiKeyAuthenticated()` there).
 */
export const ApiKeyRoute = () => SetMetadata(AUTH_METADATA, { mode: 'api-key' } satisfies AuthMetadata);

/** The request's principal (set by a guard). */
export const Auth = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  return ctx.switchToHttp().getRequest<{ principal: Principal }>().principal;
});
