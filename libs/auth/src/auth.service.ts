import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { createHash, timingSafeEqual } from 'node:crypto';
import { AppConfig } from '@app/config';
import { ApiError } from '@app/observability';
import { AuditService, Role, TenantsService } from '@app/tenancy';
import { LoginResponse, UserResponse } from './dto/user.dto';
import { PasswordVerifier } from './password';
import { UsersRepository } from './users.repository';

export interface JwtClaims {
  sub: string;
  tid: string;
  role: Role;
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
  ) {
    this.passwords = new PasswordVerifier(config.BCRYPT_ROUNDS);
  }

  isMasterKey(token: string): boolean {
    return safeEqual(token, this.config.masterKey);
  }

  /** One message for unknown email, wrong password, disabled user or tenant: nothing to enumerate. */
  async login(email: string, password: string): Promise<LoginResponse> {
    const user = await this.users.findForLogin(email);
    const ok = await this.passwords.verify(password, user?.passwordHash);
    const denied = () => ApiError.unauthorized('Invalid email or password', 'invalid_credentials');
    const refused = !user || !ok;
    if (
      refused ||
      user.role === 'system' ||
      user.status !== 'active' ||
      !(await this.tenants.isActive(user.tenantId))
    ) {
      await this.audit.append({
        action: 'auth.login_failed',
        tenantId: user?.tenantId ?? null,
        targetType: 'user',
        targetId: user?.id ?? null,
        targetLabel: user?.email ?? null,
        actor: { type: 'anonymous', label: email },
        after: { reason: refused ? 'invalid_credentials' : 'disabled' },
      });
      throw denied();
    }
    await this.audit.append({
      action: 'auth.login',
      tenantId: user.tenantId,
      targetType: 'user',
      targetId: user.id,
      targetLabel: user.email,
      actor: { type: 'user', id: user.id, label: user.email },
    });
    const claims: JwtClaims = { sub: user.id, tid: user.tenantId, role: user.role };
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
    if (!(await this.tenants.isActive(user.tenantId)))
      throw ApiError.unauthorized('Tenant is disabled', 'tenant_disabled');
    return { sub: user.id, tid: user.tenantId, role: user.role };
  }
}
