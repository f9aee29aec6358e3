import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AppConfig } from '@app/config';
import { AdminAuthGuard } from './admin-auth.guard';
import { AuthController } from './auth.controller';
import { AuthService } from './auth.service';
import { BcryptGate } from './bcrypt-gate';
import { LoginThrottle } from './login-throttle';
import { BootstrapService } from './bootstrap.service';
import { User } from './user.entity';
import { UsersController } from './users.controller';
import { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

@Module({
  imports: [
    TypeOrmModule.forFeature([User]),
    JwtModule.registerAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({ secret: config.jwtSecret, signOptions: { algorithm: 'HS256' } }),
    }),
  ],
  controllers: [AuthController, UsersController],
  providers: [
    AuthService,
    UsersRepository,
    UsersService,
    BootstrapService,
    LoginThrottle,
    BcryptGate,
    { provide: APP_GUARD, useClass: AdminAuthGuard },
  ],
  exports: [AuthService, UsersService, BcryptGate],
})
export class AuthModule {}
