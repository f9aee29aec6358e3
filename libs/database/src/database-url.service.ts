import { Injectable, Logger } from '@nestjs/common';
import { join } from 'node:path';
import { AppConfig } from '@app/config';
import { EmbeddedPostgres } from './embedded-postgres';

/**
 * Resolves where PostgreSQL is: DATABASE_URL, or an embedded server under DATA_DIR
 * started on first use and stopped after the DataSource closed.
 */
@Injectable()
export class DatabaseUrlService {
  private readonly logger = new Logger('Database');
  private embedded?: EmbeddedPostgres;

  constructor(private readonly config: AppConfig) {}

  get isEmbedded(): boolean {
    return !this.config.DATABASE_URL;
  }

  async resolve(): Promise<string> {
    if (this.config.DATABASE_URL) return this.config.DATABASE_URL;
    if (!this.embedded) {
      const dataDir = join(this.config.DATA_DIR, 'pg');
      this.embedded = new EmbeddedPostgres({ dataDir, port: this.config.EMBEDDED_PG_PORT });
      this.logger.log(
        `starting embedded PostgreSQL (data in ${dataDir}, port ${this.config.EMBEDDED_PG_PORT})`,
      );
      await this.embedded.start();
    }
    return this.embedded.url;
  }

  async stopEmbedded(): Promise<void> {
    if (!this.embedded) return;
    await this.embedded.stop();
    this.logger.log('embedded PostgreSQL stopped');
    this.embedded = undefined;
  }
}
