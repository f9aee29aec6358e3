import { CommandRunner, Option } from 'nest-commander';
import { CreateUserDto, UserResponse, UsersService } from '@app/auth';
import { CliCommand } from '../cli-command';
import { CliError } from '../cli-error';
import { CliOutput } from '../cli-output';
import { askHidden, readStdin } from '../password-input';
import { Resolvers } from '../resolvers';
import { validated } from '../validate';

interface Options {
  tenant: string;
  email: string;
  role: 'admin' | 'member';
  name?: string;
  passwordStdin?: boolean;
  json?: boolean;
}

/** A user who can log in to the admin API. The password never appears on the command line. */
@CliCommand({
  name: 'users:create',
  description:
    'Create a user in a tenant. The password is asked on the terminal (not echoed), or read from stdin with --password-stdin.',
})
export class UsersCreateCommand extends CommandRunner {
  constructor(
    private readonly users: UsersService,
    private readonly resolve: Resolvers,
    private readonly out: CliOutput,
  ) {
    super();
  }

  @Option({ flags: '--tenant <id|name>', description: 'the tenant of the user', required: true })
  parseTenant(value: string): string {
    return value;
  }

  @Option({ flags: '--email <email>', description: 'login email (unique across tenants)', required: true })
  parseEmail(value: string): string {
    return value;
  }

  @Option({
    flags: '--role <role>',
    description: 'admin or member',
    required: true,
    choices: ['admin', 'member'],
  })
  parseRole(value: string): string {
    return value;
  }

  @Option({ flags: '--name <name>', description: 'display name' })
  parseName(value: string): string {
    return value;
  }

  @Option({ flags: '--password-stdin', description: 'read the password from stdin (for scripts)' })
  parsePasswordStdin(): boolean {
    return true;
  }

  @Option({ flags: '--json', description: 'print the user as JSON' })
  parseJson(): boolean {
    return true;
  }

  private async password(fromStdin: boolean): Promise<string> {
    if (fromStdin) return readStdin();
    const [first, again] = await askHidden(['Password: ', 'Repeat the password: ']);
    if (first !== again) throw new CliError('the passwords do not match');
    return first;
  }

  async run(_args: string[], options: Options): Promise<void> {
    const tenant = await this.resolve.tenant(options.tenant);
    // Validate what can be checked before asking for the password.
    validated(
      CreateUserDto,
      { email: options.email, role: options.role, name: options.name, password: 'x'.repeat(8) },
      { email: '--email', role: '--role', name: '--name' },
    );
    const password = await this.password(!!options.passwordStdin);
    const dto = validated(
      CreateUserDto,
      { email: options.email, role: options.role, name: options.name, password },
      { password: 'password' },
    );
    const user = UserResponse.from(await this.users.createInTenant(tenant.id, dto));
    if (options.json) return this.out.json(user);
    await this.out.line(
      `Created user ${user.email} (${user.id}) in tenant ${tenant.name} (${tenant.id}), role ${user.role}.`,
    );
  }
}
