import {
  applyDecorators,
  CanActivate,
  ExecutionContext,
  Injectable,
  SetMetadata,
  UseGuards,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiForbiddenResponse } from '@nestjs/swagger';
import { ApiError } from '@app/observability';
import type { KeyPrincipal } from './key-principal';

/**
 * A key's endpoint scopes: what its `permissions` mean (README "Virtual API keys"). An
 * empty list means every endpoint. Names outside this list (legacy or imported keys, e.g.
 * "read", "write") are kept as stored but are not scopes: they restrict nothing.
 */
export const KEY_SCOPES = ['chat', 'embeddings', 'responses', 'messages', 'models'] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];

export const isKeyScope = (s: unknown): s is KeyScope => KEY_SCOPES.includes(s as KeyScope);

/** What a stored `permissions` value means: the scopes (null = every endpoint) and the names ignored. */
export function scopesOf(permissions: unknown): { scopes: KeyScope[] | null; ignored: string[] } {
  const names = Array.isArray(permissions) ? permissions.filter((p) => typeof p === 'string') : [];
  const scopes = [...new Set(names.filter(isKeyScope))];
  const ignored = names.filter((p) => !isKeyScope(p));
  return { scopes: scopes.length ? scopes : null, ignored };
}

/** 403 unless the key's scopes include `scope` (null, or missing on an old cached principal: every endpoint). */
export function assertScope(principal: Pick<KeyPrincipal, 'scopes'>, scope: KeyScope): void {
  const scopes = principal.scopes ?? null;
  if (scopes === null || scopes.includes(scope)) return;
  throw new ApiError(
    403,
    `This API key may not call the ${scope} endpoint (its permissions: ${scopes.join(', ')})`,
    'permission_error',
    'scope_not_allowed',
  );
}

const SCOPE_METADATA = 'gateway:key-scope';

/** Refuses a virtual key whose scopes do not include the route's, before anything else runs. */
@Injectable()
export class KeyScopeGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const scope = this.reflector.get<KeyScope | undefined>(SCOPE_METADATA, context.getHandler());
    const p = context.switchToHttp().getRequest<{ principal?: KeyPrincipal }>().principal;
    if (!scope || p?.kind !== 'api-key') return true;
    assertScope(p, scope);
    return true;
  }
}

/**
 * The endpoint scope a route needs. Goes after `@ApiKeyAuthenticated()` on the controller:
 * method guards run after the class's key guard, so the principal is there.
 */
export const RequireScope = (scope: KeyScope) =>
  applyDecorators(
    SetMetadata(SCOPE_METADATA, scope),
    UseGuards(KeyScopeGuard),
    ApiForbiddenResponse({
      description: `The key's permissions do not include "${scope}" (permission_error), or the model is not allowed`,
    }),
  );
