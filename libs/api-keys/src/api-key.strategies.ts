import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { AsyncLocalStorage } from 'node:async_hooks';
import { HeaderAPIKeyStrategy } from 'passport-headerapikey';
import { KeyAuthService } from './key-auth.service';
import type { KeyPrincipal } from './key-principal';

export const API_KEY_HEADER_STRATEGY = 'api-key';
export const API_KEY_BEARER_STRATEGY = 'api-key-bearer';

/** What the guard hands the strategies for one authentication. */
interface KeyAuthScope {
  auth: KeyAuthService;
  client: string;
}

/**
 * The guard's request, as the strategies see it. passport-headerapikey passes the request
 * only with `passReqToCallback`, whose argument order @nestjs/passport's callback breaks;
 * so ApiKeyGuard runs passport inside this scope with the client address (the failure
 * limiter counts per address) and its own KeyAuthService. The latter also keeps two gateway
 * apps in one process (the multi-instance tests) apart: passport's strategy registry is
 * process-global, and the last app's strategies would otherwise serve both, with its caches.
 */
export const keyAuthScope = new AsyncLocalStorage<KeyAuthScope>();

function authenticate(own: KeyAuthService, key: string): Promise<KeyPrincipal> {
  const scope = keyAuthScope.getStore();
  return (scope?.auth ?? own).authenticate(key.trim(), scope?.client);
}

/** `X-API-Key: sk-...` */
@Injectable()
export class ApiKeyHeaderStrategy extends PassportStrategy(HeaderAPIKeyStrategy, API_KEY_HEADER_STRATEGY) {
  constructor(private readonly keys: KeyAuthService) {
    super({ header: 'X-API-Key', prefix: '' }, false);
  }

  validate(key: string): Promise<KeyPrincipal> {
    return authenticate(this.keys, key);
  }
}

/** `Authorization: Bearer sk-...` (what the OpenAI SDKs send). */
@Injectable()
export class ApiKeyBearerStrategy extends PassportStrategy(HeaderAPIKeyStrategy, API_KEY_BEARER_STRATEGY) {
  constructor(private readonly keys: KeyAuthService) {
    super({ header: 'Authorization', prefix: 'Bearer ' }, false);
  }

  validate(key: string): Promise<KeyPrincipal> {
    return authenticate(this.keys, key);
  }
}
