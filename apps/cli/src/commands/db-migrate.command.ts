import { CommandRunner } from 'nest-commander';
import { DataSource } from 'typeorm';
import { CliCommand } from '../cli-command';
import { CliOutput } from '../cli-output';
import { plural } from '../table';

/** The gateway's migrations (libs/database), as the gateway runs them on start. */
@CliCommand({
  name: 'db:migrate',
  description:
    'Apply the pending database migrations (what the gateway does on start unless MIGRATIONS_RUN=false).',
  migratesSchema: true,
})
export class DbMigrateCommand extends CommandRunner {
  constructor(
    private readonly db: DataSource,
    private readonly out: CliOutput,
  ) {
    super();
  }

  async run(): Promise<void> {
    const applied = await this.db.runMigrations({ transaction: 'each' });
    if (!applied.length) {
      await this.out.line(`The schema is up to date (${plural(this.db.migrations.length, 'migration')}).`);
      return;
    }
    await this.out.lines([
      `Applied ${plural(applied.length, 'migration')}:`,
      ...applied.map((m) => `  ${m.name}`),
    ]);
  }
}
