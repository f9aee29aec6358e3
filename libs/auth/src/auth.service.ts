import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { createHash, timingSafeEqual } from 'node:crypto';
import { AppConfig } from '@app/config';
import { ApiError, MetricsService } from '@app/observability';
import { AuditService, Role, TenantsService } from '@app/tenancy';
import { LoginResponse, UserResponse } from './dto/user.dto';
import { BcryptGate } from './bcrypt-gate';
import { LoginThrottle } from './login-throttle';
import { PasswordVerifier } from './password';
import { UsersRepository } from './users.repository';

export interface JwtClaims {
  sub: string;
  tid: string;
  role: Role;
  /** The user's token_version at issue: a password, role or status change, or "log out everywhere", bumps it. */
  ver?: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time string equality (hash first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

@Injectable()
export class AuthService {
  private readonly passwords: PasswordVerifier;

  constructor(
    private readonly users: UsersRepository,
    private readonly tenants: TenantsService,
    private readonly jwt: JwtService,
    private readonly config: AppConfig,
    private readonly audit: AuditService,
    private readonly throttle: LoginThrottle,
    private readonly gate: BcryptGate,
    private readonly metrics: MetricsService,
  ) {
    this.passwords = new PasswordVerifier(config.BCRYPT_ROUNDS, (p, h) => gate.compare('login', p, h));
  }

  isMasterKey(token: string): boolean {
    return safeEqual(token, this.config.masterKey);
  }

  /**
   * One message for unknown email, wrong password, disabled user or tenant: nothing to
   * enumerate. Throttled per account and per address before any work (LoginThrottle), and
   * the compare waits for a BcryptGate slot (503 `auth_busy` when the gate is full). Every
   * login that reaches the compare is audited (a throttled one is not: no write flood).
   */
  async login(email: string, password: string, client = 'unknown', tenant?: string): Promise<LoginResponse> {
    try {
      await this.throttle.admit(email, client);
    } catch (e) {
      this.metrics.login('throttled');
      throw e;
    }
    // Emails are unique per tenant: an email used in several needs the tenant named (else 401).
    const found = await this.users.findForLogin(email, tenant);
    const user = found.length === 1 ? found[0] : undefined;
    let ok: boolean;
    try {
      ok = await this.passwords.verify(password, user?.passwordHash);
    } catch (e) {
      this.metrics.login('busy');
      throw e;
    }
    const refused = !user || !ok;
    if (
      refused ||
      user.role === 'system' ||
      user.status !== 'active' ||
      !(await this.tenants.isActive(user.tenantId))
    ) {
      this.metrics.login('failure');
      await this.audit.append({
        action: 'auth.login_failed',
        tenantId: user?.tenantId ?? null,
        targetType: 'user',
        targetId: user?.id ?? null,
        targetLabel: user?.email ?? null,
        actor: { type: 'anonymous', label: email },
        after: { reason: refused ? 'invalid_credentials' : 'disabled' },
      });
      throw ApiError.unauthorized('Invalid email or password', 'invalid_credentials');
    }
    await this.throttle.succeeded(email, client);
    this.metrics.login('success');
    await this.audit.append({
      action: 'auth.login',
      tenantId: user.tenantId,
      targetType: 'user',
      targetId: user.id,
      targetLabel: user.email,
      actor: { type: 'user', id: user.id, label: user.email },
    });
    const claims: JwtClaims = { sub: user.id, tid: user.tenantId, role: user.role, ver: user.tokenVersion };
    const access_token = await this.jwt.signAsync(claims, { expiresIn: this.config.jwtTtlSeconds });
    return {
      access_token,
      token_type: 'Bearer',
      expires_in: this.config.jwtTtlSeconds,
      user: UserResponse.from(user),
    };
  }

  /** Verifies a JWT and that its user and tenant are still active (checked on every request). */
  async verifyJwt(token: string): Promise<JwtClaims> {
    let claims: JwtClaims;
    try {
      claims = await this.jwt.verifyAsync<JwtClaims>(token, { algorithms: ['HS256'] });
    } catch (e) {
      const expired = (e as Error)?.name === 'TokenExpiredError';
      throw ApiError.unauthorized(
        expired ? 'Token expired' : 'Invalid token',
        expired ? 'token_expired' : 'invalid_token',
      );
    }
    if (typeof claims?.sub !== 'string' || typeof claims?.tid !== 'string')
      throw ApiError.unauthorized('Invalid token', 'invalid_token');
    const user = await this.users.findById(claims.tid, claims.sub).catch(() => null);
    if (!user || user.status !== 'active')
      throw ApiError.unauthorized('User is disabled or gone', 'user_disabled');
    if ((claims.ver ?? 0) !== user.tokenVersion)
      throw ApiError.unauthorized(
        'This session has ended (password, role or status changed, or logged out everywhere): log in again',
        'session_revoked',
      );
    if (!(await this.tenants.isActive(user.tenantId)))
      throw ApiError.unauthorized('Tenant is disabled', 'tenant_disabled');
    return { sub: user.id, tid: user.tenantId, role: user.role };
  }
}
