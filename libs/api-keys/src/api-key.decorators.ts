import { applyDecorators, createParamDecorator, ExecutionContext, UseGuards } from '@nestjs/common';
import { ApiSecurity, ApiTooManyRequestsResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { ApiKeyRoute } from '@app/tenancy';
import { ApiKeyGuard } from './api-key.guard';
import type { KeyPrincipal } from './key-principal';

/** A route called with a virtual key (`X-API-Key` or `Authorization: Bearer sk-...`). */
export const ApiKeyAuthenticated = () =>
  applyDecorators(
    ApiKeyRoute(),
    UseGuards(ApiKeyGuard),
    ApiSecurity('api-key'),
    ApiSecurity('bearer'),
    ApiUnauthorizedResponse({ description: 'Missing, invalid, revoked or expired API key' }),
    ApiTooManyRequestsResponse({ description: 'Too many failed attempts from this client' }),
  );

/** The KeyPrincipal of the request's virtual key. */
export const CurrentKey = createParamDecorator(
  (_: unknown, ctx: ExecutionContext): KeyPrincipal =>
    ctx.switchToHttp().getRequest<{ principal: KeyPrincipal }>().principal,
);
