import { Body, Controller, HttpCode, Ip, Post } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiServiceUnavailableResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { ApiError } from '@app/observability';
import { Auth, Authenticated, Principal, Public } from '@app/tenancy';
import { AuthService } from './auth.service';
import { LoginDto, LoginResponse } from './dto/user.dto';
import { UsersService } from './users.service';

@ApiTags('auth')
@Controller('auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly users: UsersService,
  ) {}

  @Post('login')
  @ApiOperation({ summary: 'Log in with email and password: a JWT for the admin API' })
  @Public()
  @HttpCode(200)
  @ApiOkResponse({ type: LoginResponse })
  @ApiBadRequestResponse({ description: 'email or password missing or too long' })
  @ApiUnauthorizedResponse({
    description: 'Invalid email or password (same answer for unknown email, disabled user or tenant)',
  })
  @ApiTooManyRequestsResponse({
    description: 'Too many attempts for this account or from this address (Retry-After)',
  })
  @ApiServiceUnavailableResponse({ description: 'Too many password checks in progress (Retry-After)' })
  login(@Body() dto: LoginDto, @Ip() ip: string | undefined): Promise<LoginResponse> {
    return this.auth.login(dto.email, dto.password, ip ?? 'unknown', dto.tenant);
  }

  @Post('logout-all')
  @Authenticated({ tenantScoped: false })
  @HttpCode(204)
  @ApiOperation({ summary: 'Log out everywhere: every JWT of the caller (this one too) stops working' })
  @ApiNoContentResponse()
  async logoutAll(@Auth() principal: Principal): Promise<void> {
    if (principal.kind !== 'user' || !principal.tenantId || !principal.userId)
      throw ApiError.badRequest('Only a logged-in user (JWT) has sessions to end', 'not_a_user');
    await this.users.endSessions(principal.tenantId, principal.userId);
  }
}
