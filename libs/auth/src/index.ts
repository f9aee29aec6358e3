export { AuthModule } from './auth.module';
export { AuthService, safeEqual } from './auth.service';
export type { JwtClaims } from './auth.service';
export { UsersService } from './users.service';
export { User } from './user.entity';
export type { UserStatus } from './user.entity';
export { bearerToken } from './admin-auth.guard';
export { PasswordVerifier, hashPassword } from './password';
export { UserResponse, CreateUserDto } from './dto/user.dto';
