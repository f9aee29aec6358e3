import { Injectable } from '@nestjs/common';
import { DataSource, MigrationExecutor } from 'typeorm';
import { CliError } from './cli-error';

/**
 * The CLI never migrates implicitly (the gateway does on start unless MIGRATIONS_RUN=false):
 * a read-only report must not change the schema. A command on a schema that is behind
 * refuses in one line and names the command that migrates.
 */
@Injectable()
export class SchemaCheck {
  constructor(private readonly db: DataSource) {}

  /** Names of migrations not applied yet (reads only; no migrations table is created). */
  async pending(): Promise<string[]> {
    const executor = new MigrationExecutor(this.db);
    return (await executor.getPendingMigrations()).map((m) => m.name);
  }

  async assertCurrent(): Promise<void> {
    const pending = await this.pending();
    if (!pending.length) return;
    const shown = pending.slice(0, 3).join(', ') + (pending.length > 3 ? ', ...' : '');
    throw new CliError(
      `the database schema is behind: ${pending.length} migration(s) pending (${shown}); ` +
        'run `npm run cli -- db:migrate` (or `npm run migration:run`, or start the gateway) first',
    );
  }
}
