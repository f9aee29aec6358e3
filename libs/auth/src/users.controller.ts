import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Patch,
  Post,
  Query,
} from '@nestjs/common';
import {
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { Authenticated, Page, PageQuery } from '@app/tenancy';
import { CreateUserDto, UpdateUserDto, UserPage, UserResponse } from './dto/user.dto';
import { UsersService } from './users.service';

@ApiTags('users')
@Controller('api/v1/users')
@Authenticated({ roles: ['admin'] })
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Post()
  @ApiOperation({ summary: 'Create a user of the tenant (admins)' })
  @ApiCreatedResponse({ type: UserResponse })
  @ApiConflictResponse({ description: 'Email taken' })
  async create(@Body() dto: CreateUserDto): Promise<UserResponse> {
    return UserResponse.from(await this.users.create(dto));
  }

  @Get()
  @ApiOperation({ summary: "List the tenant's users, the system user included (admins)" })
  @ApiOkResponse({ type: UserPage })
  list(@Query() q: PageQuery): Promise<Page<UserResponse>> {
    return this.users.list(q.offset, q.limit);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A user with their limits and key defaults (admins)' })
  @ApiOkResponse({ type: UserResponse })
  @ApiNotFoundResponse()
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<UserResponse> {
    return UserResponse.from(await this.users.get(id));
  }

  @Patch(':id')
  @ApiOperation({ summary: "Change a user's name, password, role, status, limits or key defaults (admins)" })
  @ApiOkResponse({ type: UserResponse })
  @ApiNotFoundResponse()
  async update(@Param('id', ParseUUIDPipe) id: string, @Body() dto: UpdateUserDto): Promise<UserResponse> {
    return UserResponse.from(await this.users.update(id, dto));
  }

  @Post(':id/logout-all')
  @HttpCode(204)
  @ApiOperation({ summary: 'End every session of the user (their JWTs stop working on every instance)' })
  @ApiNoContentResponse()
  @ApiNotFoundResponse()
  async logoutAll(@Param('id', ParseUUIDPipe) id: string): Promise<void> {
    await this.users.endSessionsOf(id);
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Delete a user and their keys (refused everywhere at once)' })
  @HttpCode(204)
  @ApiNoContentResponse()
  @ApiNotFoundResponse()
  async remove(@Param('id', ParseUUIDPipe) id: string): Promise<void> {
    await this.users.delete(id);
  }
}
